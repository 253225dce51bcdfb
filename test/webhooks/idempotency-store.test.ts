import t from 'tap'
import { MemoryIdempotencyStore } from '../../index'
import { waitUntil } from '../helpers/wait'

function clock (): { now: () => number, advance: (ms: number) => void } {
  let at = 1_000_000
  return { now: () => at, advance: (ms) => { at += ms } }
}

/** Whether `promise` settles within `ms` (real time), its timer cleared either way: a test fails fast, never by hanging. */
async function within (promise: Promise<unknown>, ms: number): Promise<'settled' | 'timed out'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timed out'>((resolve) => { timer = setTimeout(() => resolve('timed out'), ms) })
  try {
    return await Promise.race([promise.then(() => 'settled' as const), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function claimed (store: MemoryIdempotencyStore, key: string, lease: number): Promise<string> {
  const claim = await store.claim(key, lease)
  if (claim.result !== 'claimed') throw new Error(`expected claimed, got ${claim.result}`)
  return claim.token
}

t.test('claim leases an id, complete marks it done for its TTL, then it is forgotten', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  const token = await claimed(store, 'a', 1000)
  t.type(token, 'string')
  t.same(await store.claim('a', 1000), { result: 'busy' })
  await store.complete('a', token, 5000)
  t.same(await store.claim('a', 1000), { result: 'done' })
  c.advance(5000)
  t.match(await store.claim('a', 1000), { result: 'claimed', token: String }, 'past its TTL the id runs again')
  t.equal(store.size, 1)
})

t.test('release frees the id for the next delivery and wakes one waiting for it', async (t) => {
  const store = new MemoryIdempotencyStore()
  t.teardown(() => store.close())
  const token = await claimed(store, 'a', 60_000)
  // settled()'s own timer fires after 5 s: only release can wake it within 1 s (and a broken wake ends the file by 5 s).
  const waiting = store.settled('a', 5000)
  t.equal(await within(waiting, 50), 'timed out', 'the waiter waits while the lease is held')
  await store.release('a', token)
  t.equal(await within(waiting, 1000), 'settled', 'release woke the waiter')
  t.match(await store.claim('a', 1000), { result: 'claimed' })
  await store.release('missing', 'any')
  t.equal(await within(store.settled('missing', 5000), 1000), 'settled', 'settled of an unknown id resolves at once')
})

t.test('an expired lease frees the id (a crashed or hung handler does not hold it forever)', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  // A lease of 60 s on the fake clock and a wait of at most 5 s: settled()'s own timer fires 5 s of real time from now,
  // so only the takeover can wake it within 1 s.
  await store.claim('a', 60_000)
  const waiting = store.settled('a', 5000)
  c.advance(60_000)
  t.match(await store.claim('a', 1000), { result: 'claimed' }, 'the expired lease is taken over')
  t.equal(await within(waiting, 1000), 'settled', 'the takeover woke the waiter')
})

t.test('a lease has an owner: after a takeover, the first holder\'s late release or complete leaves the new lease alone', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  const first = await claimed(store, 'a', 1000)
  c.advance(1001) // the first handler outlives its lease
  const second = await claimed(store, 'a', 1000)
  t.not(second, first, 'a fresh owner token')
  await store.release('a', first) // the first handler threw
  t.same(await store.claim('a', 1000), { result: 'busy' }, 'the second delivery still holds the id: no third run')
  await store.complete('a', first, 5000) // or it finished
  t.same(await store.claim('a', 1000), { result: 'busy' }, 'a stale complete does not end the second lease either')
  await store.complete('a', second, 5000)
  t.same(await store.claim('a', 1000), { result: 'done' }, 'the holder completes')
  await store.release('a', second)
  t.same(await store.claim('a', 1000), { result: 'done' }, 'release never undoes done')
})

t.test('a holder whose lease lapsed with no takeover still completes the id', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  const token = await claimed(store, 'a', 1000)
  c.advance(2000)
  await store.complete('a', token, 5000)
  t.same(await store.claim('a', 1000), { result: 'done' })
  const other = await claimed(store, 'b', 1000)
  c.advance(2000)
  t.equal(store.size, 1, 'the lapsed lease of b is swept')
  await store.complete('b', other, 5000)
  t.same(await store.claim('b', 1000), { result: 'done' }, 'nothing holds b: its handler finished, so it is done')
})

t.test('the sweep drops expired entries', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now, sweepEvery: 5 })
  t.teardown(() => store.close())
  await store.complete('a', await claimed(store, 'a', 1000), 10)
  c.advance(10)
  // `size` sweeps too: read the map the timer sweeps through a claim that would be `done` if it were still there.
  await waitUntil('the sweep ran', () => (store as unknown as { entries: Map<string, unknown> }).entries.size === 0)
  t.match(await store.claim('a', 1000), { result: 'claimed' })
})

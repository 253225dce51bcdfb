import t from 'tap'
import { MemoryIdempotencyStore } from '../../index'
import { waitUntil } from '../helpers/wait'

function clock (): { now: () => number, advance: (ms: number) => void } {
  let at = 1_000_000
  return { now: () => at, advance: (ms) => { at += ms } }
}

t.test('claim leases an id, complete marks it done for its TTL, then it is forgotten', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  t.equal(await store.claim('a', 1000), 'claimed')
  t.equal(await store.claim('a', 1000), 'busy')
  await store.complete('a', 5000)
  t.equal(await store.claim('a', 1000), 'done')
  c.advance(5000)
  t.equal(await store.claim('a', 1000), 'claimed', 'past its TTL the id runs again')
  t.equal(store.size, 1)
})

t.test('release frees the id for the next delivery and wakes one waiting for it', async (t) => {
  const store = new MemoryIdempotencyStore()
  t.teardown(() => store.close())
  await store.claim('a', 60_000)
  const waiting = store.settled('a', 60_000)
  await store.release('a')
  await waiting
  t.equal(await store.claim('a', 1000), 'claimed')
  await store.release('missing')
  await store.settled('missing', 10)
  t.pass('release and settled of an unknown id do nothing')
})

t.test('an expired lease frees the id (a crashed or hung handler does not hold it forever)', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now })
  t.teardown(() => store.close())
  await store.claim('a', 1000)
  const waiting = store.settled('a', 60_000)
  c.advance(1000)
  t.equal(await store.claim('a', 1000), 'claimed', 'the expired lease is taken over')
  await waiting
  t.pass('the waiter was woken')
})

t.test('the sweep drops expired entries', async (t) => {
  const c = clock()
  const store = new MemoryIdempotencyStore({ now: c.now, sweepEvery: 5 })
  t.teardown(() => store.close())
  await store.claim('a', 1000)
  await store.complete('a', 10)
  c.advance(10)
  // `size` sweeps too: read the map the timer sweeps through a claim that would be `done` if it were still there.
  await waitUntil('the sweep ran', () => (store as unknown as { entries: Map<string, unknown> }).entries.size === 0)
  t.equal(await store.claim('a', 1000), 'claimed')
})

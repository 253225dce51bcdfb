import t, { type Test } from 'tap'
import Redis from 'ioredis'
import Fastify, { type FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import httpServices, { RedisIdempotencyStore, signWebhook, webhookReceiver, type Claim } from '../../index'
import { interopBinary, startRedis } from '../helpers/interop'
import { waitUntil } from '../helpers/wait'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const secret = 'whsec_' + Buffer.from('a receiver secret of 32 bytes!!!').toString('base64')

/** A client of the test's own. Closed in teardown (disconnected when the test stopped its server). */
function ownClient (t: Test, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

/** Polls `test` every 10 ms, at most 500 times (5 s). */
async function until (test: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    if (await test()) return true
    await sleep(10)
  }
  return false
}

function tokenOf (claim: Claim): string {
  if (claim.result !== 'claimed') throw new Error(`expected a claim, got ${claim.result}`)
  return claim.token
}

function delivery (body: string, id: string): { payload: string, headers: Record<string, string> } {
  return { payload: body, headers: { 'content-type': 'application/json', ...signWebhook(body, { secret, id }) } }
}

/** An app with the httpServices plugin on `url` and a receiver on /hooks (registered after it unless `receiverFirst`). */
async function app (t: Test, url: string, handler: () => unknown, receiverFirst = false): Promise<FastifyInstance> {
  const fastify = Fastify()
  const receiver = async (): Promise<void> => { await fastify.register(webhookReceiver, { path: '/hooks', secret, handler }) }
  if (receiverFirst) await receiver()
  await fastify.register(httpServices, { services: {}, redis: { url, keyPrefix: 'shared:', timeout: 1000 } })
  if (!receiverFirst) await receiver()
  await fastify.ready()
  t.teardown(async () => { await fastify.close() })
  return fastify
}

t.test('claim, done and busy; the done key keeps a TTL in Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const client = ownClient(t, redis.url)
  const store = new RedisIdempotencyStore({ client, keyPrefix: 'p:', timeout: 1000 })
  t.teardown(() => store.close())
  const token = tokenOf(await store.claim('/h\nevt_1', 60_000))
  t.equal(await client.get('p:webhook:/h\nevt_1'), token, 'the lease holds the owner token')
  t.same(await store.claim('/h\nevt_1', 60_000), { result: 'busy' })
  await store.complete('/h\nevt_1', token, 120_000)
  t.equal(await client.get('p:webhook:/h\nevt_1'), 'done')
  const ttl = await client.pttl('p:webhook:/h\nevt_1')
  t.ok(ttl > 0 && ttl <= 120_000, `done with a TTL (${ttl} ms)`)
  t.same(await store.claim('/h\nevt_1', 60_000), { result: 'done' })
  await store.settled('/h\nevt_1', 5000) // done: at once

  const other = tokenOf(await store.claim('/h\nevt_2', 60_000))
  await store.release('/h\nevt_2', other)
  t.equal(await client.exists('p:webhook:/h\nevt_2'), 0, 'released')
  t.equal((await store.claim('/h\nevt_2', 60_000)).result, 'claimed', 'free again')
})

t.test('owner tokens: a lost owner\'s late release or complete leaves the new holder alone', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const client = ownClient(t, redis.url)
  const store = new RedisIdempotencyStore({ client, timeout: 1000 })
  t.teardown(() => store.close())
  const lost = tokenOf(await store.claim('k', 50))
  t.ok(await until(async () => (await client.exists('fhs:webhook:k')) === 0), 'the 50 ms lease expired')
  const holder = tokenOf(await store.claim('k', 60_000))
  t.not(holder, lost)
  await store.release('k', lost)
  t.equal(await client.get('fhs:webhook:k'), holder, 'a late release leaves the new lease')
  await store.complete('k', lost, 60_000)
  t.equal(await client.get('fhs:webhook:k'), holder, 'a late complete too')
  await store.complete('k', holder, 60_000)
  t.equal(await client.get('fhs:webhook:k'), 'done')
  await store.release('k', holder)
  t.equal(await client.get('fhs:webhook:k'), 'done', 'a release after done does nothing')
})

t.test('settled: waits for the lease to end, gives up after its timeout, and close ends a wait', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const client = ownClient(t, redis.url)
  const store = new RedisIdempotencyStore({ client, timeout: 1000 })
  t.teardown(() => store.close())
  await store.settled('none', 5000) // nothing held: at once
  const token = tokenOf(await store.claim('k', 60_000))
  await store.settled('k', 60) // still leased: resolves after its timeout
  let settled = false
  const waiting = store.settled('k', 30_000).then(() => { settled = true })
  await store.complete('k', token, 60_000)
  await waitUntil('settled sees the key done', () => settled)
  await waiting

  tokenOf(await store.claim('j', 60_000))
  let ended = false
  const stuck = store.settled('j', 30_000).then(() => { ended = true })
  await sleep(20)
  store.close()
  await waitUntil('close ends the wait', () => ended)
  await stuck
})

t.test('two apps with two registries on one Redis: one delivery posted to both runs the handler once', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  let runs = 0
  let started = false
  let finish!: () => void
  const gate = new Promise<void>((resolve) => { finish = resolve })
  const handler = async (): Promise<void> => {
    runs++
    started = true
    await gate
  }
  const one = await app(t, redis.url, handler)
  const two = await app(t, redis.url, handler, true) // the receiver registered before httpServices: resolved when ready

  const first = one.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_shared') })
  await waitUntil('the first app runs the handler', () => started)
  const second = two.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_shared') })
  let secondDone = false
  void second.then(() => { secondDone = true })
  await sleep(30) // let the second one find the id busy and wait
  t.notOk(secondDone, 'the second waits while the first runs')
  finish()
  const [a, b] = await Promise.all([first, second])
  t.equal(a.statusCode, 200)
  t.same(a.json(), { received: true })
  t.equal(b.statusCode, 200)
  t.same(b.json(), { received: true, duplicate: true }, 'the second waited, then acknowledged')
  t.equal(runs, 1)

  const later = await two.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_shared') })
  t.same(later.json(), { received: true, duplicate: true })
  t.equal(runs, 1)
  const look = ownClient(t, redis.url)
  t.equal(await look.get('shared:webhook:/hooks\nmsg_shared'), 'done', 'kept under the registry\'s prefix')
})

t.test('Redis stopped mid-test: deliveries still run the handler (unguarded) and answer 200', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  let runs = 0
  const fastify = await app(t, redis.url, () => { runs++ })
  t.equal((await fastify.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_a') })).statusCode, 200)
  t.same((await fastify.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_a') })).json(), { received: true, duplicate: true })
  t.equal(runs, 1)

  await redis.stop()
  for (const id of ['msg_b', 'msg_c', 'msg_a']) {
    const res = await fastify.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', id) })
    t.equal(res.statusCode, 200, `${id} acknowledged`)
    t.same(res.json(), { received: true })
  }
  t.equal(runs, 4, 'every delivery ran the handler, a replay too (at least once)')
})

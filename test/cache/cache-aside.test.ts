import t from 'tap'
import Redis from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHttpServices, type HttpServices } from '../../index'
import { kMaxMemoryEntries } from '../../lib/cache/cache-aside'
import { interopBinary, startRedis } from '../helpers/interop'
import { startServer } from '../helpers/server'
import { fakeDateClock, openRegistry } from './helpers'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')

/** A promise and its resolver: a fetcher the test lets finish when it wants. */
function deferred<T> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

/** Every cache-aside behaviour, on a registry with or without Redis. */
async function behaviours (t: Parameters<typeof openRegistry>[0], redisUrl: string | undefined): Promise<void> {
  const clock = fakeDateClock(t)
  const services = await openRegistry(t, redisUrl === undefined ? { services: {} } : { redis: { url: redisUrl, timeout: 1000 }, services: {} })
  const cache = services.cache
  t.equal(cache.store, redisUrl === undefined ? 'memory' : 'redis')

  let calls = 0
  const fetcher = async (): Promise<{ n: number }> => ({ n: ++calls })
  t.same(await cache.getOrFetch('user:1', fetcher, { ttl: 1000 }), { n: 1 })
  t.same(await cache.getOrFetch('user:1', fetcher, { ttl: 1000 }), { n: 1 }, 'cached')
  t.same(await cache.getOrFetch('user:1', fetcher, { ttl: 1000, forceRefresh: true }), { n: 2 }, 'forceRefresh fetches')
  t.same(await cache.get('user:1'), { n: 2 })

  // Single-flight: concurrent misses share one fetch.
  const slow = deferred<string>()
  let slowCalls = 0
  const both = Promise.all([1, 2, 3].map(async () => await cache.getOrFetch('slow', async () => { slowCalls++; return await slow.promise })))
  slow.resolve('once')
  t.same(await both, ['once', 'once', 'once'])
  t.equal(slowCalls, 1)

  // A failing fetcher stores nothing.
  await t.rejects(cache.getOrFetch('bad', async () => { throw new Error('upstream down') }), { message: 'upstream down' })
  t.equal(await cache.get('bad'), undefined)

  await cache.set('user:2', 'two', { tags: ['users'] })
  await cache.set('user:3', 'three', { tags: ['users', 'vip'] })
  await cache.set('order:1', 'o1', { tags: ['orders'] })
  t.equal(await cache.invalidateTag('vip'), 1)
  t.equal(await cache.get('user:3'), undefined)
  t.equal(await cache.invalidatePattern('user:*'), 2, 'user:1 and user:2')
  t.equal(await cache.get('user:2'), undefined)
  t.equal(await cache.get('order:1'), 'o1')
  await cache.invalidate('order:1')
  t.equal(await cache.get('order:1'), undefined)
  t.equal(await cache.invalidateTag('orders'), 0, 'an invalidated value leaves nothing behind for its tag')

  if (redisUrl === undefined) {
    await cache.set('short', 1, { ttl: 1000 })
    clock.advance(1001)
    t.equal(await cache.get('short'), undefined, 'expired by its ttl')
  }
  await t.rejects(cache.set('fn', () => 1), TypeError, 'a value JSON cannot hold is refused')
  t.equal(await cache.getOrFetch('nothing', () => undefined), undefined, 'a fetcher may answer undefined: not stored')
  t.equal(await cache.getOrFetch('nothing', () => 'now'), 'now')
}

/** Stale copies (`staleIfError`), on a registry with or without Redis: real time, as Redis expires keys by its clock. */
async function staleCopies (t: Parameters<typeof openRegistry>[0], redisUrl: string | undefined): Promise<void> {
  const services = await openRegistry(t, redisUrl === undefined ? { services: {} } : { redis: { url: redisUrl, timeout: 1000 }, services: {} })
  const cache = services.cache
  const kept = { ttl: 150, staleIfError: 60_000 }
  const down = async (): Promise<never> => { throw new Error('upstream down') }
  t.same(await cache.getOrFetch('p', async () => ({ v: 1 }), kept), { v: 1 })
  t.same(await cache.get('p', { stale: true }), { v: 1 }, 'a fresh value reads with stale: true too')
  await sleep(300)
  t.equal(await cache.get('p'), undefined, 'expired')
  t.same(await cache.get('p', { stale: true }), { v: 1 }, 'its stale copy')
  t.same(await cache.getOrFetch('p', down, kept), { v: 1 }, 'getOrFetch serves the stale copy when its fetcher throws')
  t.equal(await cache.get('p'), undefined, 'a stale copy served is not stored again as fresh')
  await t.rejects(cache.getOrFetch('p', down), { message: 'upstream down' }, 'without staleIfError: the fetcher\'s error')
  t.same(await cache.getOrFetch('p', async () => ({ v: 2 }), kept), { v: 2 }, 'a fetch that works replaces it')
  await sleep(300)
  t.same(await cache.get('p', { stale: true }), { v: 2 })
  await cache.invalidate('p')
  t.equal(await cache.get('p', { stale: true }), undefined, 'invalidate removes the stale copy too')

  await cache.set('q:1', 1, { ...kept, tags: ['q'] })
  await cache.set('q:2', 2, kept)
  await cache.set('r', 1, kept)
  await cache.set('r', 2, { ttl: 150 })
  await sleep(300)
  t.same(await cache.get('q:1', { stale: true }), 1)
  await cache.invalidateTag('q')
  t.equal(await cache.get('q:1', { stale: true }), undefined, 'invalidateTag removes stale copies')
  await cache.invalidatePattern('q:*')
  t.equal(await cache.get('q:2', { stale: true }), undefined, 'invalidatePattern removes stale copies')
  t.equal(await cache.get('r', { stale: true }), undefined, 'a write without staleIfError leaves no older stale copy behind')

  await cache.set('z', 1)
  await cache.set('z', 2, { ttl: 0 })
  t.equal(await cache.get('z', { stale: true }), undefined, 'ttl: 0 stores no value, and drops the one stored')
  t.equal(await cache.getOrFetch('z', () => 5, { ttl: 0 }), 5)
  t.equal(await cache.getOrFetch('z', () => 6, { ttl: 0 }), 6, 'ttl: 0: fetched every time')
  await t.rejects(cache.set('x', 1, { ttl: -1 }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /ttl/ })
  await t.rejects(cache.getOrFetch('x', () => 1, { staleIfError: Number.NaN }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /staleIfError/ })
}

t.test('stale copies in memory', async (t) => {
  await staleCopies(t, undefined)
})

t.test('stale copies in Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  await staleCopies(t, redis.url)
})

t.test('the fallback pattern: a breaker fallback serves the stale copy while the upstream is down', async (t) => {
  let up = true
  const upstream = await startServer((_req, res) => {
    if (!up) { res.statusCode = 503; res.end(); return }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ name: 'Ada' }))
  })
  t.teardown(upstream.close)
  const services: HttpServices = await openRegistry(t, {
    services: {
      users: {
        baseUrl: upstream.url,
        retry: false,
        fallback: async (error, { path }) => {
          const stale = await services.cache.get(`user:${path}`, { stale: true })
          if (stale === undefined) throw error
          return stale
        }
      }
    }
  })
  // As the README shows: inside the fetcher the call rethrows (a fallback's answer would be stored as fresh), and
  // getOrFetch's staleIfError serves the copy.
  const user = async (): Promise<unknown> => await services.cache.getOrFetch('user:/users/1',
    () => services.client('users').getJson('/users/1', { fallback: (error) => { throw error } }), { ttl: 100, staleIfError: 60_000 })
  t.same(await user(), { name: 'Ada' })
  up = false
  await sleep(200)
  t.same(await services.client('users').getJson('/users/1'), { name: 'Ada' }, 'the fallback read the stale copy')
  t.same(await user(), { name: 'Ada' }, 'getOrFetch served the stale copy')
  t.equal(await services.cache.get('user:/users/1'), undefined, 'the stale value was not stored again as fresh')
  await t.rejects(services.client('users').getJson('/users/2'), { code: 'HTTP_SERVICES_ERR_STATUS', message: /answered 503/ }, 'nothing stale for another key: the error')
})

t.test('cache-aside in memory', async (t) => {
  await behaviours(t, undefined)
})

t.test('cache-aside in Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  await behaviours(t, redis.url)
  const look = new Redis(redis.url)
  t.teardown(async () => { await look.quit() })
  const services = await openRegistry(t, { redis: { url: redis.url, timeout: 1000 }, services: {} })
  await services.cache.set('k', { a: 1 }, { ttl: 5000 })
  const ttl = await look.pttl('fhs:aside:v:k')
  t.ok(ttl > 0 && ttl <= 5000, `a TTL in Redis (${ttl} ms)`)
})

t.test('across instances: one fetches under the lock, the other waits for its value', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  // A command timeout well above a loaded machine's latency: this test is about the lock, and a lock command past
  // the default 50 ms is bypassed by design (the caller fetches itself), which would make it a race.
  const one = await openRegistry(t, { redis: { url: redis.url, timeout: 1000 }, services: {} })
  const two = await openRegistry(t, { redis: { url: redis.url, timeout: 1000 }, services: {} })
  const gate = deferred<string>()
  let fetches = 0
  const first = one.cache.getOrFetch('report', async () => { fetches++; return await gate.promise })
  // Let the first take the lock before the second asks.
  const look = new Redis(redis.url)
  t.teardown(async () => { await look.quit() })
  for (let i = 0; i < 200 && (await look.exists('fhs:aside:l:report')) === 0; i++) await sleep(5)
  const second = two.cache.getOrFetch('report', async () => { fetches++; return 'second' })
  // Release the first only once the second tried the lock (Redis's count of SET commands: the first's lock, then the
  // second's): released earlier, the first could write and unlock before the second asks, and the second would
  // rightly take the free lock and fetch itself.
  const sets = async (): Promise<number> => Number(/cmdstat_set:calls=(\d+)/.exec(await look.info('commandstats'))?.[1] ?? 0)
  for (let i = 0; i < 400 && await sets() < 2; i++) await sleep(5)
  t.equal(await sets(), 2, 'the second asked for the lock while the first held it')
  gate.resolve('first')
  t.equal(await first, 'first')
  t.equal(await second, 'first', 'the waiting instance got the value of the one holding the lock')
  t.equal(fetches, 1)
  t.equal(await look.exists('fhs:aside:l:report'), 0, 'the lock is released')
})

t.test('with Redis gone, getOrFetch calls the fetcher and invalidation does nothing', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const services = await openRegistry(t, { redis: redis.url, services: {} })
  await redis.stop()
  let calls = 0
  t.equal(await services.cache.getOrFetch('x', () => ++calls), 1)
  t.equal(await services.cache.getOrFetch('x', () => ++calls), 2, 'nothing could be stored')
  t.equal(await services.cache.invalidatePattern('*'), 0)
  t.equal(await services.cache.invalidateTag('t'), 0)
})

t.test('fastify.httpServices.cache is the registry\'s', async (t) => {
  const services = createHttpServices({ services: {} })
  t.equal(services.cache.store, 'memory')
})

t.test('the memory store keeps at most 10000 values: expired ones go first, then the oldest', async (t) => {
  const clock = fakeDateClock(t)
  const services = createHttpServices({ services: {} })
  await services.cache.set('expiring', 1, { ttl: 10 })
  for (let i = 0; i < kMaxMemoryEntries - 1; i++) await services.cache.set(`k${i}`, i)
  clock.advance(20)
  await services.cache.set('one more', 1)
  t.equal(await services.cache.get('k0'), 0, 'the expired value made room')
  await services.cache.set('another', 1)
  t.equal(await services.cache.get('k0'), undefined, 'then the oldest goes')
  t.equal(await services.cache.get('another'), 1)
})

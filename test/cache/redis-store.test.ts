import t from 'tap'
import Redis from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHttpServices } from '../../index'
import { interopBinary, startRedis } from '../helpers/interop'
import { startServer } from '../helpers/server'
import { fakeDateClock, openRegistry, recordingLogger } from './helpers'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
/**
 * The command timeout of the tests that are not about it: on a loaded CI machine a read can pass the 50 ms default
 * and be bypassed (the designed fallback, a miss), which would make a test about hits fail.
 */
const kTimeout = 1000

/** A client of the test's own, to look at what the library wrote. Closed in teardown. */
function inspector (t: Parameters<typeof openRegistry>[0], url: string): Redis {
  const client = new Redis(url)
  // A client of a server the test stopped cannot QUIT: it is disconnected instead.
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

/** Waits until `key` exists (the store writes once a body ended, without making the caller wait). */
async function until (test: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 400; i++) {
    if (await test()) return true
    await sleep(5)
  }
  return false
}

t.test('two registries sharing one Redis: what one stored is a hit for the other', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ served: upstream.requests.length }))
  })
  t.teardown(upstream.close)
  const options = { redis: { url: redis.url, keyPrefix: 'app1:', timeout: kTimeout }, services: { users: { baseUrl: upstream.url, cache: { store: 'redis' as const } } } }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  const look = inspector(t, redis.url)

  const first = await one.client('users').get('/users/1')
  t.equal(first.cache, 'miss')
  t.same(await first.json(), { served: 1 })
  const key = `app1:cache:users:GET:${upstream.url}/users/1`
  t.ok(await until(async () => (await look.exists(key)) === 1), `stored under ${key}`)
  const ttl = await look.pttl(key)
  t.ok(ttl > 0 && ttl <= 120_000 + 1000, `with a TTL in Redis (${ttl} ms)`)

  const second = await two.client('users').get('/users/1')
  t.equal(second.cache, 'hit')
  t.same(await second.json(), { served: 1 })
  t.same(await two.client('users').getJson('/users/1'), { served: 1 })
  t.equal(upstream.requests.length, 1)
})

t.test('Redis stopped mid-test: calls still succeed, as misses, and the trouble is logged at warn', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end('fresh')
  })
  t.teardown(upstream.close)
  const { warnings, logger } = recordingLogger()
  const services = await openRegistry(t, { logger, redis: redis.url, services: { s: { baseUrl: upstream.url, cache: { store: 'redis' } } } })
  const client = services.client('s')
  const look = inspector(t, redis.url)
  t.equal(await (await client.get('/a')).text(), 'fresh')
  t.ok(await until(async () => (await look.exists(`fhs:cache:s:GET:${upstream.url}/a`)) === 1), 'stored with the default prefix')
  t.equal((await client.get('/a')).cache, 'hit')

  await redis.stop()
  look.disconnect()
  for (let i = 0; i < 3; i++) {
    const res = await client.get('/a')
    t.equal(res.cache, 'miss', 'the read is bypassed')
    t.equal(await res.text(), 'fresh')
  }
  t.ok(warnings.some((w) => w.msg === 'redis unavailable: bypassed (calls go on without it)'), 'logged at warn')
  t.ok(warnings.length <= 3, `rate-limited (${warnings.length} lines)`)
})

t.test('a command slower than the timeout is bypassed: the call does not wait for Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end('fresh')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { redis: { url: redis.url, timeout: 20 }, services: { s: { baseUrl: upstream.url, cache: { store: 'redis' } } } })
  const look = inspector(t, redis.url)
  await (await services.client('s').get('/a')).text()
  // Redis busy for 300 ms: the read times out after 20 ms and the call goes to the upstream.
  const busy = look.call('DEBUG', 'SLEEP', '0.3')
  await sleep(20)
  const res = await services.client('s').get('/a')
  t.equal(res.cache, 'miss')
  t.equal(await res.text(), 'fresh')
  await busy
})

t.test('entries over maxEntrySize are not stored in Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end(req.url === '/big' ? 'x'.repeat(2000) : 'small')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { redis: { url: redis.url, timeout: kTimeout }, services: { s: { baseUrl: upstream.url, cache: { store: 'redis', maxEntrySize: 1000 } } } })
  const look = inspector(t, redis.url)
  const client = services.client('s')
  t.equal((await (await client.get('/big')).text()).length, 2000)
  t.equal(await (await client.get('/small')).text(), 'small')
  t.ok(await until(async () => (await look.exists(`fhs:cache:s:GET:${upstream.url}/small`)) === 1))
  t.equal(await look.exists(`fhs:cache:s:GET:${upstream.url}/big`), 0)
  t.equal((await client.get('/big')).cache, 'miss')
})

t.test('a connection the library opened is closed with the registry; a client given to it is not', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const given = new Redis(redis.url)
  t.teardown(() => given.quit())
  const owned = createHttpServices({ redis: redis.url, services: {} })
  const borrowed = createHttpServices({ redis: given, services: {} })
  await owned.open()
  await borrowed.open()
  const ownedClient = (owned as unknown as { redis: { client: { status: string } } }).redis.client
  t.ok(await until(async () => ownedClient.status === 'ready'), 'connected on open')
  await owned.close()
  await borrowed.close()
  t.ok(await until(async () => ownedClient.status === 'end'), 'the owned connection ended')
  t.equal(await given.ping(), 'PONG', 'the given client still works')
})

t.test('Redis store: a 304 refreshes the shared entry, and a POST on one instance invalidates it for the other', { skip: redisBinary.skip }, async (t) => {
  const clock = fakeDateClock(t)
  const redis = await startRedis(t, redisBinary.path as string)
  let version = 1
  const upstream = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    res.setHeader('cache-control', 'max-age=10')
    res.setHeader('etag', `"v${version}"`)
    if (req.method === 'POST') {
      version++
      res.statusCode = 204
      res.end()
      return
    }
    if (req.headers['if-none-match'] === `"v${version}"`) {
      res.statusCode = 304
      res.end()
      return
    }
    res.end(`body v${version}`)
  })
  t.teardown(upstream.close)
  const options = { redis: { url: redis.url, timeout: kTimeout }, services: { s: { baseUrl: upstream.url, cache: { store: 'redis' as const } } } }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  const look = inspector(t, redis.url)
  const key = `fhs:cache:s:GET:${upstream.url}/doc`

  t.equal(await (await one.client('s').get('/doc')).text(), 'body v1')
  t.ok(await until(async () => (await look.exists(key)) === 1))
  clock.advance(11_000)
  const revalidated = await two.client('s').get('/doc')
  t.equal(revalidated.cache, 'revalidated')
  t.equal(await revalidated.text(), 'body v1')
  t.ok(await until(async () => (await one.client('s').get('/doc')).cache === 'hit'), 'the refreshed entry is fresh for the other instance')
  const seen = upstream.requests.length

  await two.client('s').post('/doc', { json: { change: true } })
  t.ok(await until(async () => (await look.exists(key)) === 0), 'the POST deleted the entry')
  const after = await one.client('s').get('/doc')
  t.equal(after.cache, 'miss')
  t.equal(await after.text(), 'body v2')
  t.equal(upstream.requests.length, seen + 2, 'the POST and the refetch')
})

t.test('a private cache in Redis: entries per credentials, and no credential in Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await startServer((req, res) => {
    // An entry varies on what Vary names: were the credentials still in the key, they would be stored with it
    // (must-revalidate: undici would store the answer to a request with Authorization then, RFC 9111 §3.5).
    res.setHeader('cache-control', 'private, max-age=60, must-revalidate')
    res.setHeader('vary', 'authorization, cookie')
    res.end(req.headers.authorization === 'Bearer s3cr3t-one' ? 'user one' : 'user two')
  })
  t.teardown(upstream.close)
  const options = { redis: { url: redis.url, keyPrefix: 'priv:', timeout: kTimeout }, services: { me: { baseUrl: upstream.url, cache: { store: 'redis' as const, type: 'private' as const } } } }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  const look = inspector(t, redis.url)
  const alice = { headers: { authorization: 'Bearer s3cr3t-one' } }
  const bob = { headers: { authorization: 'Bearer s3cr3t-two' } }
  t.equal(await (await one.client('me').get('/me', alice)).text(), 'user one')
  const key = `priv:cache:me:GET:${upstream.url}/me`
  t.ok(await until(async () => (await look.exists(key)) === 1), `stored under ${key}`)
  const again = await two.client('me').get('/me', alice)
  t.same([again.cache, await again.text()], ['hit', 'user one'], 'a hit for the same credentials, in another instance')
  const other = await two.client('me').get('/me', bob)
  t.same([other.cache, await other.text()], ['miss', 'user two'], 'not for other credentials')
  t.equal(upstream.requests.length, 2)
  const dump = JSON.stringify(await Promise.all((await look.keys('priv:*')).map(async (k) => [k, await look.type(k) === 'hash' ? await look.hgetall(k) : await look.get(k)])))
  t.notMatch(dump, /s3cr3t/, 'no credential is in Redis')
})

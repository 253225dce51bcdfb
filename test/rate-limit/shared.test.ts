import t from 'tap'
import type { Test } from 'tap'
import Redis from 'ioredis'
import { createHttpServices, RateLimitedError, type HttpServices } from '../../index'
import { gcra, kGcraScript, kSlidingWindowScript, slidingWindow } from '../../lib/rate-limit/redis-scripts'
import type { CreateHttpServicesOptions } from '../../lib/services'
import { interopBinary, startRedis } from '../helpers/interop'
import { closedPort, startServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const skip = redisBinary.skip

type T = Test

/** A client of the test's own. Closed in teardown. */
function inspector (t: T, url: string): Redis {
  const client = new Redis(url)
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

async function openRegistry (t: T, options: CreateHttpServicesOptions): Promise<HttpServices> {
  const services = createHttpServices(options)
  await services.open()
  t.teardown(() => services.close())
  return services
}

interface Lines {
  warn: Array<{ obj: Record<string, unknown>, msg?: string }>
  info: Array<{ obj: Record<string, unknown>, msg?: string }>
  logger: NonNullable<CreateHttpServicesOptions['logger']>
}

function recording (): Lines {
  const warn: Lines['warn'] = []
  const info: Lines['info'] = []
  const noop = (): void => {}
  const logger = {
    debug: noop,
    error: noop,
    warn: (obj: object, msg?: string) => { warn.push({ obj: obj as Record<string, unknown>, msg }) },
    info: (obj: object, msg?: string) => { info.push({ obj: obj as Record<string, unknown>, msg }) },
    child: () => logger
  }
  return { warn, info, logger }
}

async function counting (t: T): Promise<{ url: string, count: () => number }> {
  let n = 0
  const upstream = await startServer((_req, res) => {
    n++
    res.end('ok')
  })
  t.teardown(upstream.close)
  return { url: upstream.url, count: () => n }
}

t.test('the GCRA script: a burst at once, then one permit per period, reserved ahead within the longest wait', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const c = inspector(t, redis.url)
  // A period of one minute: the refill during the test is far below a permit, whatever the load.
  const period = 60_000
  const first = await gcra(c, 'k', period, 2, 0)
  t.same(first, [0, 1], 'a permit now, one left of the burst')
  t.same(await gcra(c, 'k', period, 2, 0), [0, 0], 'the second of the burst')
  const [refused, free] = await gcra(c, 'k', period, 2, 0)
  t.ok(refused > period - 1000 && refused <= period, `empty: the next permit is about a period away (${refused} ms)`)
  t.equal(free, 0)
  const [reserved] = await gcra(c, 'k', period, 2, 2 * period)
  t.ok(reserved > period - 1000 && reserved <= period, 'a wait within the longest wait is reserved')
  const [queued] = await gcra(c, 'k', period, 2, 3 * period)
  t.ok(queued > 2 * period - 1000 && queued <= 2 * period, `the next waiter queues behind it (${queued} ms)`)
  const [tooLong] = await gcra(c, 'k', period, 2, period)
  t.ok(tooLong > 2 * period, 'a wait past the longest is refused ...')
  const [again] = await gcra(c, 'k', period, 2, 4 * period)
  t.ok(again > 2 * period - 1000 && again <= 3 * period, '... and took nothing')
  const ttl = await c.pttl('k')
  t.ok(ttl > 5 * period - 1000 && ttl <= 5 * period + 1, `the key expires when the bucket is full again (${ttl} ms)`)
})

t.test('the GCRA script: loaded again with EVAL when Redis lost it (NOSCRIPT), and refilled by Redis\'s clock', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const c = inspector(t, redis.url)
  await gcra(c, 'k', 1000, 1, 0)
  await c.script('FLUSH')
  const [wait] = await gcra(c, 'k', 1000, 1, 0)
  t.ok(wait > 0 && wait <= 1000, 'answered after the flush, from the same state')
  let expired = false
  for (let i = 0; i < 500 && !expired; i++) {
    expired = (await c.exists('k')) === 0
    if (!expired) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.ok(expired, 'the key is gone once the bucket would be full')
  t.same(await gcra(c, 'k', 1000, 1, 0), [0, 0], 'full again')
})

t.test('the sliding-window script: limit per window, in order, reserved ahead within the longest wait', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const c = inspector(t, redis.url)
  const window = 60_000
  t.same(await slidingWindow(c, 'w', 2, window, 0, 'a'), [0, 1], 'a permit now, one left')
  t.same(await slidingWindow(c, 'w', 2, window, 0, 'b'), [0, 0])
  const [refused] = await slidingWindow(c, 'w', 2, window, 0, 'c')
  t.ok(refused > window - 1000 && refused <= window, `full: the next permit when the first is a window old (${refused} ms)`)
  t.equal(await c.zcard('w'), 2, 'a refusal records nothing')
  const [reserved] = await slidingWindow(c, 'w', 2, window, window, 'd')
  t.ok(reserved > window - 1000 && reserved <= window, 'reserved for when the first permit leaves the window')
  const [queued] = await slidingWindow(c, 'w', 2, window, window, 'e')
  // Waits are counted from each call's own moment on Redis's clock: compare the permits' times, not the two waits.
  t.ok(queued > window - 1000 && queued <= window, `the next waiter waits too (${queued} ms)`)
  const [d, e] = [await c.zscore('w', 'd'), await c.zscore('w', 'e')]
  t.ok(d !== null && e !== null && Number(e) >= Number(d), `and is not served before the one ahead of it (${d}, ${e})`)
  const [third] = await slidingWindow(c, 'w', 2, window, 3 * window, 'f')
  t.ok(third > 2 * window - 1000 && third <= 2 * window, `and the one after that a window later (${third} ms)`)
  const ttl = await c.pttl('w')
  t.ok(ttl > 3 * window - 1000 && ttl <= 3 * window + 2, `the set expires a window after its last permit (${ttl} ms)`)
})

t.test('two registries on one Redis share one sliding window', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const options = {
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { limit: 3, window: 60_000, shared: true } } }
  }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  for (let i = 0; i < 2; i++) t.equal((await one.client('api').get('/')).status, 200)
  t.equal((await two.client('api').get('/')).status, 200)
  await t.rejects(two.client('api').get('/'), RateLimitedError, 'the fourth call, from either, is refused')
  await t.rejects(one.client('api').get('/'), RateLimitedError)
  t.equal(upstream.count(), 3)
  t.match(two.stats().api.rateLimit, { kind: 'sliding-window', shared: 'redis', limit: 3, available: 0, rejected: 1 })
  const look = inspector(t, redis.url)
  t.equal(await look.zcard('fhs:rlw:api'), 3, 'the permits are the sorted set fhs:rlw:api')
})

t.test('two registries on one Redis share one limit', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  // Five permits a minute: the refill within the test is nothing, whatever the load.
  const options = {
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 5, interval: 60_000, shared: true } } }
  }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  for (let i = 0; i < 3; i++) t.equal((await one.client('api').get('/')).status, 200)
  for (let i = 0; i < 2; i++) t.equal((await two.client('api').get('/')).status, 200)
  await t.rejects(two.client('api').get('/'), RateLimitedError, 'the sixth call, from either, is refused')
  await t.rejects(one.client('api').get('/'), RateLimitedError)
  t.equal(upstream.count(), 5, 'the upstream saw the limit, not twice it')
  t.match(one.stats().api.rateLimit, { kind: 'token-bucket', shared: 'redis', available: 0, rate: 5, rejected: 1 })
  const look = inspector(t, redis.url)
  t.equal(await look.exists('fhs:rl:api'), 1, 'the bucket is the key fhs:rl:api')
})

t.test('a wait within maxWait is a permit reserved in Redis: callers of both registries queue', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const options = {
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 1, interval: 100, burst: 1, maxWait: 10_000, shared: true } } }
  }
  const one = await openRegistry(t, options)
  const two = await openRegistry(t, options)
  const calls = await Promise.all([one, two, one, two].map(async (r) => (await r.client('api').get('/')).status))
  t.same(calls, [200, 200, 200, 200], 'every call got its permit')
  const waited = (one.stats().api.rateLimit as { waited: number }).waited + (two.stats().api.rateLimit as { waited: number }).waited
  t.equal(waited, 3, 'all but the first waited for a reserved permit')
})

t.test('Redis stopped: the limit holds in each instance (warn once), and is shared again when Redis is back (info)', { skip }, async (t) => {
  let redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const lines = recording()
  const services = await openRegistry(t, {
    logger: lines.logger,
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 3, interval: 60_000, shared: true } } }
  })
  const client = services.client('api')
  t.equal((await client.get('/')).status, 200)
  await redis.stop()
  for (let i = 0; i < 3; i++) t.equal((await client.get('/')).status, 200, 'calls still succeed')
  await t.rejects(client.get('/'), RateLimitedError, 'the local limiter has the same settings')
  t.match(services.stats().api.rateLimit, { shared: 'local', outages: 1 })
  const outage = lines.warn.filter((l) => l.obj.rateLimit === 'local')
  t.equal(outage.length, 1, 'one warn line for the outage')
  t.equal(outage[0].msg, 'shared rate limit: Redis unavailable, limiting in this process until it is back')

  redis = await startRedis(t, redisBinary.path as string, redis.port)
  // ioredis reconnects on its own (within about 2 s); the limiter asks Redis again at most once a second.
  const until = Date.now() + 15_000
  while (services.stats().api.rateLimit !== undefined && (services.stats().api.rateLimit as { shared: string }).shared !== 'redis') {
    if (Date.now() > until) break
    await client.get('/').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.match(services.stats().api.rateLimit, { shared: 'redis' }, 'back on Redis')
  t.equal(lines.info.filter((l) => l.obj.rateLimit === 'redis').length, 1, 'one info line when it is back')
  t.equal(lines.warn.filter((l) => l.obj.rateLimit === 'local').length, 1, 'still one warn line')
  const look = inspector(t, redis.url)
  t.equal(await look.exists('fhs:rl:api'), 1, 'the bucket is in Redis again')
})

t.test('a client not connected yet (status wait): the limit is local, with no outage logged or counted', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const lines = recording()
  // The user's client, which the user connects later (the library never connects a client it was given).
  const user = new Redis(redis.url, { lazyConnect: true })
  t.teardown(async () => { await user.quit().catch(() => { user.disconnect() }) })
  const services = await openRegistry(t, {
    logger: lines.logger,
    redis: { client: user, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 3, interval: 60_000, shared: true } } }
  })
  const client = services.client('api')
  t.equal(user.status, 'wait')
  t.equal((await client.get('/')).status, 200, 'a call before the client connected')
  t.match(services.stats().api.rateLimit, { shared: 'local', outages: 0 }, 'limited here, no outage counted')
  t.equal(lines.warn.filter((l) => l.obj.rateLimit === 'local').length, 0, 'and none logged')

  await user.connect()
  t.equal((await client.get('/')).status, 200)
  t.match(services.stats().api.rateLimit, { shared: 'redis', outages: 0 }, 'on Redis once connected')
  t.equal(lines.info.filter((l) => l.obj.rateLimit === 'redis').length, 0, 'no "Redis is back": it was never away')
  const look = inspector(t, redis.url)
  t.equal(await look.exists('fhs:rl:api'), 1)

  // A connection that was ready and is lost is an outage.
  await redis.stop()
  t.equal((await client.get('/')).status, 200)
  t.match(services.stats().api.rateLimit, { shared: 'local', outages: 1 })
  t.equal(lines.warn.filter((l) => l.obj.rateLimit === 'local').length, 1, 'logged once')
})

t.test('a first connection that has not succeeded yet is not an outage; Redis there: shared, without a return logged', { skip }, async (t) => {
  const port = await closedPort()
  const user = new Redis(`redis://127.0.0.1:${port}`, { retryStrategy: () => 50, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  user.on('error', () => {})
  t.teardown(() => { user.disconnect() })
  const upstream = await counting(t)
  const lines = recording()
  const services = createHttpServices({
    logger: lines.logger,
    redis: { client: user, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 3, interval: 60_000, shared: true } } }
  })
  t.teardown(() => services.close())
  await services.open()
  t.not(user.status, 'ready')
  t.equal((await services.client('api').get('/')).status, 200, `a call while connecting (status ${user.status})`)
  t.match(services.stats().api.rateLimit, { shared: 'local', outages: 0 })
  t.equal(lines.warn.filter((l) => l.obj.rateLimit === 'local').length, 0, 'no outage logged')

  const redis = await startRedis(t, redisBinary.path as string, port)
  await waitUntil('the client connected', () => user.status === 'ready', 10_000)
  t.equal((await services.client('api').get('/')).status, 200)
  t.match(services.stats().api.rateLimit, { shared: 'redis', outages: 0 }, 'shared once Redis answers')
  t.equal(lines.info.filter((l) => l.obj.rateLimit === 'redis').length, 0, 'no "Redis is back" line')
  await redis.stop()
  t.equal((await services.client('api').get('/')).status, 200)
  t.match(services.stats().api.rateLimit, { shared: 'local', outages: 1 }, 'lost after it was ready: an outage')
})

t.test('both scripts ask for effects replication first (Redis 3.2 and 4), harmless on this Redis', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const c = inspector(t, redis.url)
  for (const script of [kGcraScript, kSlidingWindowScript]) {
    const first = script.trim().split('\n')[0]
    t.match(first, /redis\.replicate_commands/, 'the first line')
    t.equal(await c.eval(`${first}\nreturn 'ok'`, 0), 'ok', `runs on Redis ${String(await c.info('server')).match(/redis_version:(\S+)/)?.[1]}`)
  }
})

t.test('failClosed: with Redis away calls are refused without reaching the upstream', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const lines = recording()
  const services = await openRegistry(t, {
    logger: lines.logger,
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 100, maxWait: 200, shared: { failClosed: true } } } }
  })
  t.equal((await services.client('api').get('/')).status, 200)
  await redis.stop()
  const err = await services.client('api').get('/').catch((e: unknown) => e) as RateLimitedError
  t.type(err, RateLimitedError)
  t.ok(Number(err.retryAfter) >= 1, 'with a Retry-After')
  t.equal(upstream.count(), 1)
  t.match(lines.warn.find((l) => l.obj.rateLimit === 'local'), { obj: { failClosed: true } })
})

t.test('Redis slower than its timeout: the call goes on with the local limiter', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const services = await openRegistry(t, {
    redis: { url: redis.url, timeout: 100 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 100, shared: true } } }
  })
  const look = inspector(t, redis.url)
  // Every client's commands held for 1.5 s (in force once the command answers): the limiter's gets no answer within
  // its 100 ms.
  await look.call('CLIENT', 'PAUSE', '1500', 'ALL')
  t.equal((await services.client('api').get('/')).status, 200, 'not held up by Redis')
  t.match(services.stats().api.rateLimit, { shared: 'local' })
})

t.test('adaptive and shared: a 429 slows this instance\'s share of the shared bucket', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  let status = 429
  const upstream = await startServer((_req, res) => {
    res.statusCode = status
    res.end()
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, {
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, retry: false, breaker: false, rateLimit: { rate: 10, interval: 60_000, shared: true, adaptive: true } } }
  })
  await services.client('api').request('GET', '/', { throwHttpErrors: false })
  t.match(services.stats().api.rateLimit, { shared: 'redis', factor: 0.5, rate: 5, burst: 5 })
  status = 200
  const look = inspector(t, redis.url)
  const tat = Number(await look.get('fhs:rl:api'))
  await services.client('api').request('GET', '/', { throwHttpErrors: false })
  const after = Number(await look.get('fhs:rl:api'))
  t.ok(Math.abs(after - tat - 12_000) < 1, `a permit at half the rate costs two periods of the bucket (${after - tat} ms)`)
})

t.test('shared needs the redis option', async (t) => {
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', rateLimit: { rate: 5, shared: true } } } }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
    key: 'services.api.rateLimit.shared',
    message: /services\.api\.rateLimit\.shared: needs the redis option/
  })
  t.throws(() => createHttpServices({
    redis: 'redis://127.0.0.1:1',
    services: { api: { baseUrl: 'http://127.0.0.1:1', rateLimit: { rate: 5, shared: { failClosed: 'yes' as never } } } }
  }), { message: /services\.api\.rateLimit\.shared\.failClosed: expected a boolean/ })
  t.throws(() => createHttpServices({
    redis: 'redis://127.0.0.1:1',
    services: { api: { baseUrl: 'http://127.0.0.1:1', rateLimit: { rate: 5, shared: { other: 1 } as never } } }
  }), { message: /services\.api\.rateLimit\.shared/ })
  const services = createHttpServices({
    redis: 'redis://127.0.0.1:1',
    services: { api: { baseUrl: 'http://127.0.0.1:1', rateLimit: { rate: 5, shared: false } } }
  })
  t.equal(services.get('api').options.rateLimit?.shared, undefined, 'false: each instance limits on its own')
  await services.close()
})

t.test('reset() refills the shared bucket: its key in Redis is deleted', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await counting(t)
  const services = await openRegistry(t, {
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: upstream.url, rateLimit: { rate: 1, interval: 60_000, shared: true } } }
  })
  const look = inspector(t, redis.url)
  t.equal((await services.client('api').get('/')).status, 200)
  await t.rejects(services.client('api').get('/'), RateLimitedError)
  services.reset()
  let gone = false
  for (let i = 0; i < 300 && !gone; i++) {
    gone = (await look.exists('fhs:rl:api')) === 0
    if (!gone) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.ok(gone, 'the bucket is gone from Redis')
  t.match(services.stats().api.rateLimit, { available: 1, rejected: 0 })
  t.equal((await services.client('api').get('/')).status, 200, 'a permit again')
})

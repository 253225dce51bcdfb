import diagnosticsChannel from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { CircuitOpenError, createHttpServices, type BreakerOptions, type BreakerStateMessage, type HttpServices } from '../../index'
import type { CreateHttpServicesOptions } from '../../lib/services'
import { interopBinary, startRedis } from '../helpers/interop'
import { startServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const skip = redisBinary.skip

/** Opens after 2 failures of 2 calls; stays open a minute unless a test says otherwise. */
const kBreaker: BreakerOptions = { minimumRequests: 2, errorPercentage: 50, resetAfter: 60_000, shared: true }

function inspector (t: Test, url: string): Redis {
  const client = new Redis(url)
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

async function openRegistry (t: Test, options: CreateHttpServicesOptions): Promise<HttpServices> {
  const services = createHttpServices(options)
  await services.open()
  t.teardown(() => services.close())
  return services
}

async function failing (t: Test): Promise<{ url: string, count: () => number, status: (s: number) => void }> {
  let n = 0
  let status = 503
  const upstream = await startServer((_req, res) => {
    n++
    res.statusCode = status
    res.end()
  })
  t.teardown(upstream.close)
  return { url: upstream.url, count: () => n, status: (s) => { status = s } }
}

const state = (services: HttpServices): string => (services.stats().api.breaker as { state: string }).state
const redisStats = (services: HttpServices): unknown => services.stats().api.redis

function options (url: string, upstream: string, breaker: BreakerOptions = kBreaker, logger?: CreateHttpServicesOptions['logger']): CreateHttpServicesOptions {
  return { logger, redis: { url, timeout: 2000 }, services: { api: { baseUrl: upstream, retry: false, throwHttpErrors: false, breaker } } }
}

async function trip (services: HttpServices): Promise<void> {
  for (let i = 0; i < 2; i++) await (await services.client('api').get('/')).dump()
}

t.test('an opening in one instance opens the other\'s breaker, which then fails fast without reaching the upstream', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const warnings: Array<{ obj: Record<string, unknown>, msg?: string }> = []
  const noop = (): void => {}
  const logger = { debug: noop, info: noop, error: noop, warn: (obj: object, msg?: string) => { warnings.push({ obj: obj as Record<string, unknown>, msg }) }, child: () => logger }
  const opened: boolean[] = []
  const onState = (m: unknown): void => { if ((m as BreakerStateMessage).registry === two && (m as BreakerStateMessage).state === 'open') opened.push((m as BreakerStateMessage).remote) }
  diagnosticsChannel.subscribe('fastify-http-services:breaker:state', onState)
  t.teardown(() => { diagnosticsChannel.unsubscribe('fastify-http-services:breaker:state', onState) })
  const one = await openRegistry(t, options(redis.url, upstream.url))
  const two = await openRegistry(t, options(redis.url, upstream.url, kBreaker, logger))
  await waitUntil('both subscribed', () => (redisStats(one) as { breaker: string }).breaker === 'subscribed' &&
    (redisStats(two) as { breaker: string }).breaker === 'subscribed')
  t.same(redisStats(two), { connection: 'connected', breaker: 'subscribed' })

  const look = inspector(t, redis.url)
  const listener = inspector(t, redis.url)
  const heard: string[] = []
  listener.on('message', (_channel: string, text: string) => { heard.push(text) })
  await listener.subscribe('fhs:breaker')

  await trip(one)
  t.equal(state(one), 'open')
  await waitUntil('the other instance\'s breaker opened', () => state(two) === 'open')
  const seen = upstream.count()
  await t.rejects(two.client('api').get('/'), CircuitOpenError, 'fails fast')
  t.equal(upstream.count(), seen, 'without reaching the upstream')
  t.match(warnings.find((w) => w.obj.breaker === 'open'), {
    obj: { remote: true, lastFailure: 'status 503', resetAfter: 60_000 },
    msg: 'circuit breaker opened: another instance\'s opened (last: status 503): calls fail fast for 60000 ms'
  }, 'logged as an opening from elsewhere')
  t.same(opened, [true], 'its breaker:state message says remote')

  const key = await look.get('fhs:breaker:api')
  t.match(JSON.parse(key as string), { service: 'api', state: 'open', reason: 'status 503' })
  const ttl = await look.pttl('fhs:breaker:api')
  t.ok(ttl > 0 && ttl <= 60_000, `the key lives as long as the breaker stays open (${ttl} ms)`)

  // Anything `two` published went out on its connection before this sentinel: one message heard means no echo.
  const twoClient = (two as unknown as { redis: { client: Redis } }).redis.client
  await twoClient.publish('fhs:breaker', 'sentinel')
  await waitUntil('the sentinel is heard', () => heard.includes('sentinel'))
  const openings = heard.filter((h) => h !== 'sentinel').map((h) => JSON.parse(h) as { state: string, instance: string })
  t.equal(openings.length, 1, 'the instance that received the opening did not publish it again')
  t.match(openings[0], { state: 'open', service: 'api' })
})

t.test('an instance that starts while a breaker is open elsewhere opens its own', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const one = await openRegistry(t, options(redis.url, upstream.url))
  await trip(one)
  const look = inspector(t, redis.url)
  for (let i = 0; i < 200 && (await look.exists('fhs:breaker:api')) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  const later = await openRegistry(t, options(redis.url, upstream.url))
  await waitUntil('the late instance\'s breaker opened', () => state(later) === 'open')
  t.pass('opened from the key')
})

t.test('a closing deletes the key; each instance probes on its own', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const short = { ...kBreaker, resetAfter: 300 }
  const one = await openRegistry(t, options(redis.url, upstream.url, short))
  const two = await openRegistry(t, options(redis.url, upstream.url, short))
  await waitUntil('subscribed', () => (redisStats(two) as { breaker: string }).breaker === 'subscribed')
  await trip(one)
  await waitUntil('two opened', () => state(two) === 'open')
  upstream.status(200)
  await waitUntil('one half-open', () => state(one) === 'halfOpen')
  t.equal((await one.client('api').get('/')).status, 200, 'the probe passes')
  t.equal(state(one), 'closed')
  const look = inspector(t, redis.url)
  let gone = false
  for (let i = 0; i < 300 && !gone; i++) {
    gone = (await look.exists('fhs:breaker:api')) === 0
    if (!gone) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.ok(gone, 'the key of the opening is deleted')
  await waitUntil('two half-open on its own', () => state(two) === 'halfOpen')
  t.equal((await two.client('api').get('/')).status, 200, 'and two closes by its own probe')
  t.equal(state(two), 'closed')
})

t.test('a closing does not delete an opening another instance wrote (compare-and-delete)', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const bad = await failing(t)
  const good = await failing(t)
  good.status(200)
  // One opens for a minute; two (the same service, its own upstream) is opened from there, half-opens after 300 ms,
  // and its probe closes it while one's opening is still in force.
  const one = await openRegistry(t, options(redis.url, bad.url))
  const two = await openRegistry(t, options(redis.url, good.url, { ...kBreaker, resetAfter: 300 }))
  await waitUntil('subscribed', () => (redisStats(two) as { breaker: string }).breaker === 'subscribed')
  const look = inspector(t, redis.url)
  const listener = inspector(t, redis.url)
  const heard: Array<{ state: string, instance: string }> = []
  listener.on('message', (_channel: string, text: string) => { heard.push(JSON.parse(text) as { state: string, instance: string }) })
  await listener.subscribe('fhs:breaker')

  await trip(one)
  await waitUntil('two opened', () => state(two) === 'open')
  const written = await look.get('fhs:breaker:api')
  const opener = (JSON.parse(written as string) as { instance: string, until: number }).instance
  t.ok(typeof opener === 'string' && opener !== '', 'the key names the instance that opened')
  t.ok((JSON.parse(written as string) as { until: number }).until > Date.now(), 'and when its opening ends')
  await waitUntil('two half-open', () => state(two) === 'halfOpen')
  t.equal((await two.client('api').get('/')).status, 200, 'two\'s probe passes')
  t.equal(state(two), 'closed')
  // Two's closing goes out on its connection after anything it sent for the key: once it is heard, Redis has done that.
  await waitUntil('two\'s closing is heard', () => heard.some((m) => m.state === 'closed' && m.instance !== opener))
  t.equal(await look.get('fhs:breaker:api'), written, 'one\'s opening is still in its key')
  t.equal(state(one), 'open')

  // And an instance starting now still sees it.
  const later = await openRegistry(t, options(redis.url, good.url))
  await waitUntil('the late instance\'s breaker opened', () => state(later) === 'open')
})

t.test('an instance\'s closing leaves a newer opening that another instance wrote over its own', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  // Open for a second: time to read the key it writes, even on a loaded machine.
  const one = await openRegistry(t, options(redis.url, upstream.url, { ...kBreaker, resetAfter: 1000 }))
  const look = inspector(t, redis.url)
  await trip(one)
  for (let i = 0; i < 200 && (await look.exists('fhs:breaker:api')) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.match(JSON.parse(await look.get('fhs:breaker:api') as string), { state: 'open' }, 'one wrote its opening')
  // Another instance's probe failed: it opened again and wrote the key anew.
  const other = JSON.stringify({ service: 'api', state: 'open', instance: 'another', reason: 'status 503', until: Date.now() + 60_000 })
  await look.set('fhs:breaker:api', other, 'PX', 60_000)
  upstream.status(200)
  await waitUntil('one half-open', () => state(one) === 'halfOpen')
  t.equal((await one.client('api').get('/')).status, 200)
  t.equal(state(one), 'closed')
  const oneClient = (one as unknown as { redis: { client: Redis } }).redis.client
  await oneClient.ping() // after one's compare-and-delete on the same connection
  t.equal(await look.get('fhs:breaker:api'), other, 'the other instance\'s opening is left')
})

t.test('catch-up applies an opening read from its key only while half of resetAfter is left of it', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const look = inspector(t, redis.url)
  const opening = (service: string): string => JSON.stringify({ service, state: 'open', instance: 'another', reason: 'status 503' })
  // resetAfter is a minute: 10 s left is below half (a trip would open for a whole minute), 50 s is not.
  await look.set('fhs:breaker:api', opening('api'), 'PX', 10_000)
  await look.set('fhs:breaker:other', opening('other'), 'PX', 50_000)
  const services = await openRegistry(t, {
    redis: { url: redis.url, timeout: 2000 },
    services: {
      api: { baseUrl: upstream.url, retry: false, throwHttpErrors: false, breaker: kBreaker },
      other: { baseUrl: upstream.url, retry: false, throwHttpErrors: false, breaker: kBreaker }
    }
  })
  // Keys are read service by service in order: once `other` opened, `api`'s was read before it.
  await waitUntil('other opened from its key', () => (services.stats().other.breaker as { state: string }).state === 'open')
  t.equal(state(services), 'closed', 'an opening with less than half of resetAfter left is not applied')
})

t.test('with several upstreams only the failing upstream\'s breaker opens elsewhere', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const bad = await failing(t)
  const good = await failing(t)
  good.status(200)
  const opts = (): CreateHttpServicesOptions => ({
    redis: { url: redis.url, timeout: 2000 },
    services: { api: { baseUrl: [bad.url, good.url], retry: false, throwHttpErrors: false, breaker: kBreaker } }
  })
  const one = await openRegistry(t, opts())
  const two = await openRegistry(t, opts())
  await waitUntil('subscribed', () => (redisStats(two) as { breaker: string }).breaker === 'subscribed')
  for (let i = 0; i < 4; i++) await (await one.client('api').get('/')).dump()
  const upstreams = (s: HttpServices): Record<string, { state: string }> => (s.stats().api.breaker as { upstreams: Record<string, { state: string }> }).upstreams
  t.equal(upstreams(one)[bad.url].state, 'open')
  await waitUntil('two\'s breaker of the bad upstream opened', () => upstreams(two)[bad.url].state === 'open')
  t.equal(upstreams(two)[good.url].state, 'closed')
  const before = bad.count()
  for (let i = 0; i < 3; i++) t.equal((await two.client('api').get('/')).status, 200, 'calls go to the good upstream')
  t.equal(bad.count(), before)
})

t.test('Redis stopped: breakers are local; back: openings are shared again', { skip }, async (t) => {
  let redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const one = await openRegistry(t, options(redis.url, upstream.url))
  const two = await openRegistry(t, options(redis.url, upstream.url))
  await waitUntil('subscribed', () => (redisStats(two) as { breaker: string }).breaker === 'subscribed')
  await redis.stop()
  await waitUntil('unsubscribed', () => (redisStats(two) as { breaker: string }).breaker === 'unsubscribed')
  t.not((redisStats(two) as { connection: string }).connection, 'connected')
  await trip(one)
  t.equal(state(one), 'open', 'the local breaker opens without Redis')
  t.equal(state(two), 'closed')
  upstream.status(200)
  t.equal((await two.client('api').get('/')).status, 200, 'the other goes on')

  redis = await startRedis(t, redisBinary.path as string, redis.port)
  await waitUntil('subscribed again', () => (redisStats(one) as { breaker: string }).breaker === 'subscribed' &&
    (redisStats(two) as { breaker: string }).breaker === 'subscribed', 15_000)
  t.same(redisStats(two), { connection: 'connected', breaker: 'subscribed' })
  upstream.status(503)
  await trip(two)
  await waitUntil('an opening is shared again', () => (one.stats().api.breaker as { opens: number }).opens === 1 && state(two) === 'open')
  t.pass('shared again')
})

t.test('a client of the user\'s: its subscriber connection is closed on close, the client is not', { skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const upstream = await failing(t)
  const client = inspector(t, redis.url)
  await client.ping()
  const services = createHttpServices({ redis: client, services: { api: { baseUrl: upstream.url, breaker: kBreaker } } })
  await services.open()
  await waitUntil('subscribed', () => (redisStats(services) as { breaker: string }).breaker === 'subscribed')
  const clients = async (): Promise<number> => String(await client.client('LIST')).trim().split('\n').length
  t.equal(await clients(), 2, 'the client and its subscriber')
  await services.close()
  let n = 2
  for (let i = 0; i < 200 && n !== 1; i++) {
    n = await clients()
    if (n !== 1) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.equal(n, 1, 'the subscriber is gone')
  t.equal(client.status, 'ready', 'the user\'s client stays open')
})

t.test('breaker.shared needs the redis option', async (t) => {
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', breaker: { shared: true } } } }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
    key: 'services.api.breaker.shared',
    message: /services\.api\.breaker\.shared: needs the redis option/
  })
  t.throws(() => createHttpServices({ redis: 'redis://127.0.0.1:1', services: { api: { baseUrl: 'http://127.0.0.1:1', breaker: { shared: 1 as never } } } }),
    { message: /services\.api\.breaker\.shared: expected a boolean/ })
})

t.test('a client without duplicate(): openings are not received (logged), the breaker works locally', async (t) => {
  const upstream = await failing(t)
  const warnings: Array<Record<string, unknown>> = []
  const noop = (): void => {}
  const logger = { debug: noop, info: noop, error: noop, warn: (obj: object) => { warnings.push(obj as Record<string, unknown>) }, child: () => logger }
  const published: string[] = []
  // An ioredis look-alike (a class: a plain object is taken for options), connected, without duplicate().
  class Client {
    status = 'ready'
    async getBuffer (): Promise<null> { return null }
    async set (): Promise<string> { return 'OK' }
    async get (): Promise<null> { return null }
    async del (): Promise<number> { return 1 }
    async publish (_channel: string, text: string): Promise<number> { published.push(text); return 0 }
    async quit (): Promise<string> { return 'OK' }
  }
  const client = new Client()
  const services = await openRegistry(t, { logger, redis: { client, timeout: 2000 }, services: { api: { baseUrl: upstream.url, retry: false, throwHttpErrors: false, breaker: kBreaker } } })
  t.match(warnings.find((w) => w.redis === 'breaker subscribe'), { err: /no duplicate\(\)/ })
  t.same(redisStats(services), { connection: 'connected', breaker: 'unsubscribed' })
  await trip(services)
  t.equal(state(services), 'open')
  await waitUntil('the opening is published', () => published.length === 1)
  t.match(JSON.parse(published[0]), { service: 'api', state: 'open' })
})

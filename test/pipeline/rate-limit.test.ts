import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import httpServices, { RateLimitedError, createHttpServices, type RateLimitOptions } from '../../index'
import { sendJson, startServer, type Handler } from '../helpers/server'

/** A server that notes when each request arrived (performance.now()). */
async function setup (t: Test, rateLimit: RateLimitOptions, handler: Handler = (_req, res) => sendJson(res, 200, {})) {
  const arrivals: number[] = []
  const server = await startServer((req, res, seen) => {
    arrivals.push(performance.now())
    return handler(req, res, seen)
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, rateLimit } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api'), arrivals }
}

/**
 * Checks that the k-th arrival came no earlier than the k-th permit could be granted (`permitAt(k)` ms after
 * `t0`). Each call arrives after its permit, so under load arrivals only come later: this bound never flakes,
 * while a limiter letting calls through too early breaks it.
 */
function noEarlierThanPermits (t: Test, arrivals: number[], t0: number, permitAt: (k: number) => number): void {
  const sorted = [...arrivals].sort((a, b) => a - b)
  // Timers have whole milliseconds: a permit may fire up to 1 ms before its exact time.
  const early = sorted.map((a, k) => [k, a - t0, permitAt(k)]).filter(([, at, permit]) => at < permit - 2)
  t.same(early, [], 'no call reached the server before its permit was due')
}

t.test('a token bucket keeps calls within the rate: a burst, then one per rate/interval', async (t) => {
  const { api, arrivals } = await setup(t, { rate: 5, interval: 100, burst: 5, maxWait: 1000 })
  const t0 = performance.now()
  const results = await Promise.all(Array.from({ length: 15 }, async () => (await api.get('/x')).status))
  t.same(results, Array(15).fill(200), 'every call waited for its permit rather than failing')
  noEarlierThanPermits(t, arrivals, t0, (k) => Math.max(0, k - 4) * 20)
  t.ok(arrivals.length === 15 && Math.max(...arrivals) - t0 >= 198, 'the 15th call waited for the 10th refilled token')
})

t.test('past maxWait the call fails at once with RateLimitedError (503, Retry-After)', async (t) => {
  const { server, services, api } = await setup(t, { rate: 3, interval: 10000 })
  const results = await Promise.allSettled(Array.from({ length: 5 }, async () => await api.getJson('/x')))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 3)
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason)
  t.equal(rejected.length, 2)
  for (const err of rejected) {
    t.ok(err instanceof RateLimitedError)
    t.match(err, { code: 'HTTP_SERVICES_ERR_RATE_LIMITED', statusCode: 503, service: 'api', retryAfter: 4, headers: { 'retry-after': '4' } })
  }
  t.equal(server.requests.length, 3, 'the refused calls never reached the server')
  t.match(services.stats().api.rateLimit, { kind: 'token-bucket', available: 0, rate: 3, interval: 10000, rejected: 2, waited: 0 })
})

t.test('a sliding window keeps every window within the limit', async (t) => {
  const { api, arrivals, services } = await setup(t, { limit: 4, window: 150, maxWait: 1000 })
  t.match(services.stats().api.rateLimit, { kind: 'sliding-window', available: 4, limit: 4 })
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 10 }, async () => await api.getJson('/x')))
  t.equal(arrivals.length, 10)
  noEarlierThanPermits(t, arrivals, t0, (k) => Math.floor(k / 4) * 150)
  t.match(services.stats().api.rateLimit, { waited: 6, rejected: 0 })
})

t.test('a wait that would outlive the inbound deadline fails at once', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const app = Fastify()
  await app.register(httpServices, {
    requestDeadline: 500,
    services: { api: { baseUrl: server.url, retry: false, rateLimit: { rate: 1, interval: 1000, maxWait: 5000 } } }
  })
  app.get('/', async (request) => await request.httpClient('api').getJson('/x'))
  t.teardown(async () => { await app.close(); await server.close() })
  t.equal((await app.inject('/')).statusCode, 200)
  const res = await app.inject('/')
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_RATE_LIMITED' })
  t.equal(server.requests.length, 1)
})

t.test('the adaptive limiter halves the rate on a 429 from upstream and climbs back on success', async (t) => {
  let status = 429
  const { api, services } = await setup(t, { rate: 100, interval: 1000, adaptive: { increase: 0.1 } }, (_req, res) => sendJson(res, status, {}))
  t.match(services.stats().api.rateLimit, { rate: 100, factor: 1 })
  const res = await api.get('/x', { throwHttpErrors: false })
  t.equal(res.status, 429)
  await res.dump()
  t.match(services.stats().api.rateLimit, { rate: 50, factor: 0.5, decreases: 1 })
  status = 200
  await api.getJson('/x')
  await api.getJson('/x')
  t.match(services.stats().api.rateLimit, { rate: 70 })
})

t.test('a waiting call aborts with its signal', async (t) => {
  const { api, server } = await setup(t, { rate: 1, interval: 1000, maxWait: 1000 })
  await api.getJson('/x')
  const ac = new AbortController()
  const waiting = api.getJson('/y', { signal: ac.signal })
  setTimeout(() => ac.abort(), 20)
  await t.rejects(waiting, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  t.equal(server.requests.length, 1)
})

t.test('the adaptive limiter hears a 429 that a retry overcame', async (t) => {
  let n = 0
  const server = await startServer((_req, res) => sendJson(res, n++ === 0 ? 429 : 200, {}))
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, retry: { attempts: 2, baseDelay: 1, budget: false }, rateLimit: { rate: 100, adaptive: true } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(server.requests.length, 2)
  t.match(services.stats().api.rateLimit, { decreases: 1, waited: 0 }, 'one decrease for the 429 of the first attempt')
  t.equal(Math.round((services.stats().api.rateLimit as { factor: number }).factor * 100), 55, 'halved, then one success added 0.05')
})

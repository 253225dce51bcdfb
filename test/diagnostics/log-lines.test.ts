import diagnosticsChannel from 'node:diagnostics_channel'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import httpServices, { createHttpServices, type HttpServices, type Logger, type ServiceOptions } from '../../index'
import { Call } from '../../lib/call'
import { kChannelNames } from '../../lib/diagnostics/channels'
import { kLogLines } from '../../lib/diagnostics/log-subscriber'
import { publishBreakerState, publishFallbackServed, publishRetryRefused, publishRetryScheduled } from '../../lib/diagnostics/publish'
import type { HttpService } from '../../lib/service'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer } from '../helpers/server'

type LogLine = Record<string, unknown> & { level: number, msg: string }

/** A line without what differs from one moment to the next. */
function stable (line: LogLine): Record<string, unknown> {
  const { time: _time, pid: _pid, hostname: _hostname, ...rest } = line
  return rest
}

/**
 * Subscribes the log lines for the test, as an open registry does, for messages published by hand while no registry
 * is open (an open one would write each line a second time).
 */
function subscribePolicyLines (t: Test): void {
  for (const { name, line } of kLogLines) {
    diagnosticsChannel.subscribe(name, line)
    t.teardown(() => { diagnosticsChannel.unsubscribe(name, line) })
  }
}

/** A call of `service` as the client makes it, logging into `log` (its line gets `{ service }`, as a client's does). */
function callOf (service: HttpService, log: Logger, path: string, method = 'GET'): Call {
  return new Call(service, method, path, path.split('?')[0], {}, false, null, {}, log)
}

t.test('the retry lines from retry:scheduled and retry:refused are the lines the retry policy writes', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, { busy: true }))
  t.teardown(async () => await server.close())
  const live = capturePino<LogLine>()
  const services = createHttpServices({
    logger: live.logger,
    services: { api: { baseUrl: server.url, breaker: false, retry: { attempts: 2, delay: () => 5, budget: false } } }
  })
  await services.open()
  await t.rejects(services.client('api').get('/x?token=secret'), { code: 'HTTP_SERVICES_ERR_STATUS' })
  await services.close()
  const expected = live.lines.filter((l) => /^(retrying|giving up)/.test(l.msg)).map(stable)
  t.equal(expected.length, 3, 'two retries and the giving up, as the policy logs them')
  // The lines as the retry policy wrote them itself before it published instead (their text and fields are API).
  t.match(expected, [
    { level: 40, service: 'api', method: 'GET', path: '/x?token=***', upstream: server.url, attempt: 1, of: 3, delayMs: 5, delaySource: 'delay', reason: 'status 503', msg: 'retrying GET api after status 503 (attempt 1 of 3 failed), next in 5 ms' },
    { level: 40, attempt: 2, of: 3, msg: 'retrying GET api after status 503 (attempt 2 of 3 failed), next in 5 ms' },
    { level: 40, attempt: 3, of: 3, reason: 'status 503', why: 'no retries left', msg: 'giving up GET api after status 503: no retries left' }
  ])

  subscribePolicyLines(t)
  const published = capturePino<LogLine>()
  const ctx = callOf(services.get('api'), published.logger, '/x?token=secret')
  publishRetryScheduled(ctx, 1, 3, 'status 503', 5, 'delay')
  publishRetryScheduled(ctx, 2, 3, 'status 503', 5, 'delay')
  publishRetryRefused(ctx, 3, 3, 'status 503', 'attempts')
  t.same(published.lines.map(stable), expected)
})

t.test('each refusal in the words of the retry policy', async (t) => {
  subscribePolicyLines(t)
  const services = createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:9' } } })
  const { logger, lines } = capturePino<LogLine>()
  const ctx = callOf(services.get('api'), logger, '/x')
  publishRetryRefused(ctx, 1, 4, 'status 429', 'retry-after', 60_000.4)
  publishRetryRefused(ctx, 1, 4, 'ECONNRESET', 'deadline', 250)
  publishRetryRefused(ctx, 2, 4, 'status 503', 'breaker', undefined, 29_500)
  publishRetryRefused(ctx, 2, 4, 'status 503', 'budget')
  t.same(lines.map((l) => [l.level, l.why, l.msg]), [
    [40, 'the upstream asks to wait 60001 ms, more than maxRetryAfter', 'giving up GET api after status 429: the upstream asks to wait 60001 ms, more than maxRetryAfter'],
    [40, 'a wait of 250 ms would pass the deadline', 'giving up GET api after ECONNRESET: a wait of 250 ms would pass the deadline'],
    [40, 'the circuit breaker is open for 29500 ms more: no attempt can be made', 'giving up GET api after status 503: the circuit breaker is open for 29500 ms more: no attempt can be made'],
    [40, 'retry budget exhausted', 'giving up GET api after status 503: retry budget exhausted']
  ])
  t.match(lines[2], { breaker: 'open', retryAfterMs: 29_500, service: 'api', upstream: 'http://127.0.0.1:9', attempt: 2, of: 4 })
  t.notOk('breaker' in lines[3], 'the breaker fields only when the breaker refused')

  publishRetryScheduled(ctx, 1, 4, 'status 503', 1200, 'retry-after')
  publishRetryScheduled(ctx, 1, 4, 'status 429', 800, 'x-ratelimit-reset')
  t.same(lines.slice(4).map((l) => l.msg), [
    'retrying GET api after status 503 (attempt 1 of 4 failed), next in 1200 ms as Retry-After asks',
    'retrying GET api after status 429 (attempt 1 of 4 failed), next in 800 ms as X-RateLimit-Reset asks'
  ])
})

t.test('the breaker lines from breaker:state: on the breaker\'s logger, as the breaker policy writes them', async (t) => {
  subscribePolicyLines(t)
  const { logger, lines } = capturePino<LogLine>()
  const services = createHttpServices({ logger, services: { api: { baseUrl: 'http://127.0.0.1:9' } } })
  const api = services.get('api')
  publishBreakerState(api, api.log, undefined, 'open', 4, 4, 'status 503', 200)
  publishBreakerState(api, api.log, undefined, 'halfOpen')
  publishBreakerState(api, api.log, undefined, 'closed')
  const upstream = 'http://10.0.0.2:8080'
  publishBreakerState(api, api.log.child({ upstream }), upstream, 'open', 2, 2, 'status 503', 200)
  t.match(lines[0], { level: 40, service: 'api', breaker: 'open', failures: 4, calls: 4, resetAfter: 200, lastFailure: 'status 503', msg: 'circuit breaker opened after 4 failures of 4 calls (last: status 503): calls fail fast for 200 ms' })
  t.same(lines.slice(1, 3).map((l) => [l.level, l.breaker, l.service, l.msg]), [
    [30, 'halfOpen', 'api', 'circuit breaker half-open: the next call is a probe'],
    [30, 'closed', 'api', 'circuit breaker closed']
  ])
  t.match(lines[3], { level: 40, upstream, msg: `circuit breaker of ${upstream} opened after 2 failures of 2 calls (last: status 503): calls go to the other upstreams for 200 ms` })
})

t.test('the fallback line from fallback:served', async (t) => {
  subscribePolicyLines(t)
  const { logger, lines } = capturePino<LogLine>()
  const services = createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:9' } } })
  const ctx = callOf(services.get('api'), logger, '/x')
  publishFallbackServed(ctx, { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  publishFallbackServed(ctx, { code: 'HTTP_SERVICES_ERR_STATUS' }, 503)
  t.same(lines.map(stable), [
    { level: 20, service: 'api', err: 'HTTP_SERVICES_ERR_CONNECTION', method: 'GET', msg: 'call failed: serving the fallback' },
    { level: 20, service: 'api', err: 'HTTP_SERVICES_ERR_STATUS', status: 503, method: 'GET', msg: 'call failed: serving the fallback' }
  ])
})

/** A Fastify app with its own pino logger, registering service `api` with `options`, and a route that calls it twice at once. */
async function app (t: Test, options: ServiceOptions) {
  const { logger, lines } = capturePino<LogLine>()
  const instance = Fastify({ loggerInstance: logger as never })
  await instance.register(httpServices, { services: { api: options } })
  instance.get('/twice', async (request) => {
    const api = request.httpClient('api')
    return await Promise.allSettled([api.getJson('/a'), api.getJson('/b')]).then((r) => r.map((x) => x.status))
  })
  await instance.ready()
  t.teardown(async () => await instance.close())
  return { instance, lines }
}

t.test('two apps in one process: each logs its own calls\' events only, on its request\'s logger, once', async (t) => {
  const server = await startServer((_req, res) => { setTimeout(() => sendJson(res, 200, {}), 30) })
  t.teardown(async () => await server.close())
  const limited = await app(t, { baseUrl: server.url, rateLimit: { rate: 1, interval: 60, burst: 1, maxWait: 1000 } })
  const bulkheaded = await app(t, { baseUrl: server.url, bulkhead: { maxConcurrent: 1, maxQueue: 1 } })

  const a = await limited.instance.inject('/twice')
  const b = await bulkheaded.instance.inject('/twice')
  t.same([a.json(), b.json()], [['fulfilled', 'fulfilled'], ['fulfilled', 'fulfilled']])

  const events = (lines: LogLine[]): LogLine[] => lines.filter((l) => /^(rate limit|bulkhead):/.test(l.msg))
  const mine = events(limited.lines)
  const theirs = events(bulkheaded.lines)
  t.equal(mine.length, 1, 'one rate-limit line, not one per open app')
  t.match(mine[0], { level: 20, service: 'api', method: 'GET', path: '/b', msg: /^rate limit: GET api waits \d+ ms for a permit$/ })
  t.equal(theirs.length, 1, 'one bulkhead line')
  t.match(theirs[0], { level: 20, service: 'api', method: 'GET', path: '/b', msg: 'bulkhead: GET api waits for a slot (1 of 1 in flight, 1 of 1 waiting)' })
  const reqIdOf = (lines: LogLine[]): unknown => lines.find((l) => l.msg === 'incoming request')?.reqId
  t.equal(mine[0].reqId, reqIdOf(limited.lines), 'on the inbound request\'s logger (its reqId)')
  t.equal(theirs[0].reqId, reqIdOf(bulkheaded.lines))
})

t.test('the registries hold one subscription between them; when the last closes, no channel has a listener', async (t) => {
  const listened = (): string[] => kChannelNames.filter((name) => diagnosticsChannel.hasSubscribers(name))
  t.same(listened(), [], 'nothing listens before a registry opens')
  const open = async (): Promise<HttpServices> => {
    const services = createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:9' } } })
    await services.open()
    return services
  }
  const first = await open()
  const second = await open()
  const lines = listened()
  t.ok(lines.includes('fastify-http-services:bulkhead:queued') && lines.includes('fastify-http-services:rate-limit:rejected'), 'the log lines listen')
  t.notOk(lines.some((name) => /:(call|attempt):/.test(name)), 'never to the call\'s or the attempts\' channels')
  await first.close()
  t.same(listened(), lines, 'still listening while a registry is open')
  await first.close()
  t.same(listened(), lines, 'closing twice lets go once')
  await second.close()
  t.same(listened(), [], 'the last registry closed: no listener left')
})

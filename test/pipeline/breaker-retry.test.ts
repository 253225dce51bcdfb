import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { createHttpServices, type HttpStatusError, type Logger, type ServiceOptions } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer, type Handler, type TestServer } from '../helpers/server'

type LogLine = { level: number, msg: string, [key: string]: unknown }

/** One service `api` over `servers` (its only upstream, or one breaker each), logging into `lines`. */
async function setup (t: Test, handlers: Handler[], service: Partial<ServiceOptions>) {
  const servers: TestServer[] = []
  for (const h of handlers) servers.push(await startServer(h))
  const { logger, lines } = capturePino<LogLine>()
  const services = createHttpServices({
    logger: logger as Logger,
    services: { api: { baseUrl: servers.length === 1 ? servers[0].url : servers.map((s) => s.url), ...service } }
  })
  await services.open()
  t.teardown(async () => {
    await services.close()
    for (const s of servers) await s.close()
  })
  return { servers, services, api: services.client('api'), lines }
}

t.test('a retry due after the breaker opened gives up at once with the upstream\'s 503, logged with why', async (t) => {
  const { servers, services, api, lines } = await setup(t, [(_req, res) => sendJson(res, 503, { error: 'down' }, { 'retry-after': '5' })], {
    retry: { attempts: 3, budget: false },
    breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 30_000 }
  })
  await t.rejects(api.get('/warm', { retry: false }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503 }, 'the first failure: below minimumRequests')
  const start = performance.now()
  const err = await api.get('/x').then(() => undefined, (e: unknown) => e) as HttpStatusError
  const took = performance.now() - start
  t.match(err, { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, detail: 'down', attempts: 1, breaker: 'open', retryAfter: 5 },
    'the 503 itself, with the breaker state, not CIRCUIT_OPEN after a 5 s sleep')
  t.ok(took < 2500, `ended at once, not after the 5 s Retry-After (took ${Math.round(took)} ms)`)
  t.equal(servers[0].requests.length, 2)
  t.equal(lines.filter((l) => /^retrying/.test(l.msg)).length, 0, 'no retry announced')
  const giveUp = lines.filter((l) => /^giving up/.test(l.msg))
  t.equal(giveUp.length, 1, 'the give-up is logged once')
  t.match(giveUp[0], {
    level: 40,
    service: 'api',
    upstream: servers[0].url,
    attempt: 1,
    reason: 'status 503',
    breaker: 'open',
    why: /^the circuit breaker is open for \d+ ms more: no attempt can be made$/
  })
  t.ok((giveUp[0].retryAfterMs as number) > 25_000, 'with the time until it half-opens')
  t.match(services.stats().api, { failures: 2, failuresBy: { status: 2 }, breaker: { state: 'open', rejected: 0 } })
})

t.test('with one breaker per upstream, retries go on while some upstream is closed and stop once all are open', async (t) => {
  const fail: Handler = (_req, res) => sendJson(res, 503, { error: 'down' })
  const { servers, api, lines } = await setup(t, [fail, fail], {
    retry: { attempts: 5, baseDelay: 1, budget: false },
    breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 30_000 }
  })
  const [a, b] = servers
  await t.rejects(api.get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 4, breaker: 'open' },
    'a, b, a (a opens, b is still closed: go on), b (b opens: nowhere left to go)')
  t.same(servers.map((s) => s.requests.length), [2, 2])
  t.same(lines.filter((l) => /^retrying/.test(l.msg)).map((l) => l.upstream), [a.url, b.url, a.url], 'each retry line names the upstream that failed')
  t.match(lines.find((l) => /^giving up/.test(l.msg)), { upstream: b.url, attempt: 4, breaker: 'open', why: /circuit breaker is open/ })
})

t.test('a breaker that half-opens within the wait lets the retry through as its probe', async (t) => {
  let hits = 0
  const { servers, services, api } = await setup(t, [(_req, res) => { hits++; sendJson(res, hits <= 2 ? 503 : 200, { hits }) }], {
    retry: { attempts: 2, delay: () => 300, budget: false },
    breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 100 }
  })
  await t.rejects(api.get('/warm', { retry: false }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503 })
  const res = await api.get('/x')
  t.equal(res.status, 200, 'the retry was the probe, and it succeeded')
  t.equal(res.attempts, 2)
  await res.dump()
  t.equal(servers[0].requests.length, 3)
  t.match(services.stats().api.breaker, { state: 'closed', opens: 1 })
})

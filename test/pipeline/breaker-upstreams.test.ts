import Fastify from 'fastify'
import t, { type Test } from 'tap'
import httpServices, {
  CircuitOpenError,
  ConnectionError,
  createHttpServices,
  type BreakerOptions,
  type Logger,
  type ServiceOptions
} from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { closedPort, sendJson, startServer, type TestServer } from '../helpers/server'

type LogLine = { level: number, msg: string, service?: string, upstream?: string, breaker?: string }
type UpstreamStats = { state: string, opens: number, calls: number, failures: number, retryAfterMs: number }
type Stats = { state: string, opens: number, rejected: number, retryAfterMs: number, upstreams: Record<string, UpstreamStats> }

const capture = (): { logger: Logger, lines: LogLine[] } => capturePino<LogLine>()

const kSmall: BreakerOptions = { minimumRequests: 2, errorPercentage: 50, window: 10000, resetAfter: 200 }
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** Upstreams answering `status[i]` (changeable) with their own name; one service `api` over all of them. */
async function setup (t: Test, count: number, service: Partial<ServiceOptions> = {}) {
  const status = Array.from({ length: count }, () => 200)
  const servers: TestServer[] = []
  for (let i = 0; i < count; i++) {
    servers.push(await startServer((_req, res) => sendJson(res, status[i], { server: i })))
  }
  const { logger, lines } = capture()
  const services = createHttpServices({
    logger,
    services: { api: { baseUrl: servers.map((s) => s.url), retry: false, throwHttpErrors: false, breaker: kSmall, ...service } }
  })
  await services.open()
  t.teardown(async () => {
    await services.close()
    for (const s of servers) await s.close()
  })
  const api = services.client('api')
  const breaker = (): Stats => services.stats().api.breaker as Stats
  const counts = (): number[] => servers.map((s) => s.requests.length)
  const get = async (path = '/x'): Promise<{ status: number, url: string }> => {
    const res = await api.get(path)
    await res.dump()
    return { status: res.status, url: res.url }
  }
  return { servers, status, services, api, breaker, counts, get, breakerLines: () => lines.filter((l) => l.breaker !== undefined) }
}

t.test('a failing upstream\'s breaker opens, calls go to the others, and it half-opens and closes on a good probe', async (t) => {
  const { servers, status, breaker, counts, get, breakerLines } = await setup(t, 3)
  const [a, b, c] = servers
  status[1] = 503
  const first = []
  for (let i = 0; i < 6; i++) first.push(await get())
  t.same(first.map((r) => r.url), [a, b, c, a, b, c].map((s) => `${s.url}/x`), 'round robin, and res.url names the upstream that answered')
  t.same(first.map((r) => r.status), [200, 503, 200, 200, 503, 200])
  t.same(counts(), [2, 2, 2])
  const stats = breaker()
  t.equal(stats.state, 'closed', 'the service is up while some upstream is closed')
  t.match(stats.upstreams[b.url], { state: 'open', opens: 1, calls: 2, failures: 2 })
  t.match(stats.upstreams[a.url], { state: 'closed', calls: 2, failures: 0 })
  t.match(stats.upstreams[c.url], { state: 'closed', calls: 2, failures: 0 })
  t.match(stats, { opens: 1, rejected: 0, retryAfterMs: 0 })

  for (let i = 0; i < 6; i++) t.equal((await get()).status, 200, 'no call reaches the open upstream')
  t.same(counts(), [5, 2, 5], 'the healthy upstreams took every call while b was open')

  status[1] = 200
  await sleep(250)
  t.equal(breaker().upstreams[b.url].state, 'halfOpen')
  const probes = []
  for (let i = 0; i < 3; i++) probes.push(await get())
  t.ok(probes.some((r) => r.url === `${b.url}/x`), 'the half-open upstream got a probe')
  t.equal(counts()[1], 3, 'one probe only')
  t.equal(breaker().upstreams[b.url].state, 'closed', 'a good probe closes it')
  t.same(breakerLines().map((l) => [l.breaker, l.service, l.upstream]), [
    ['open', 'api', b.url], ['halfOpen', 'api', b.url], ['closed', 'api', b.url]
  ], 'state changes name the service and the upstream')
  t.match(breakerLines()[0], { level: 40, msg: `circuit breaker of ${b.url} opened after 2 failures of 2 calls (last: status 503): calls go to the other upstreams for 200 ms` })
})

t.test('a refused upstream opens its breaker; a retried GET goes to the next upstream', async (t) => {
  const port = await closedPort()
  const good = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const refused = `http://127.0.0.1:${port}`
  const services = createHttpServices({
    services: { api: { baseUrl: [refused, good.url], retry: { attempts: 3, baseDelay: 1, budget: false }, breaker: kSmall } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await good.close() })
  const api = services.client('api')
  const res = await api.get('/r')
  t.equal(res.status, 200, 'the first pick refused the connection, the retry went to the other upstream')
  t.equal(res.attempts, 2)
  t.equal(res.url, `${good.url}/r`, 'res.url names the upstream that answered')
  await res.dump()
  for (let i = 0; i < 3; i++) t.equal((await api.get('/r')).status, 200)
  const stats = services.stats().api.breaker as Stats
  t.match(stats.upstreams[refused], { state: 'open', failures: 2 })
  t.match(stats.upstreams[good.url], { state: 'closed', failures: 0 })

  const noRetry = await api.get('/r', { retry: false })
  t.equal(noRetry.url, `${good.url}/r`, 'while it is open even a call without retries goes to the healthy upstream')
  await noRetry.dump()
})

t.test('without retries, an attempt to a refused upstream fails with ConnectionError and counts for that upstream only', async (t) => {
  const port = await closedPort()
  const good = await startServer((_req, res) => sendJson(res, 200, {}))
  const refused = `http://127.0.0.1:${port}`
  const services = createHttpServices({ services: { api: { baseUrl: [good.url, refused], retry: false, breaker: kSmall } } })
  await services.open()
  t.teardown(async () => { await services.close(); await good.close() })
  const api = services.client('api')
  t.equal((await api.get('/a')).url, `${good.url}/a`)
  await t.rejects(api.get('/b'), ConnectionError)
  t.match((services.stats().api.breaker as Stats).upstreams, { [good.url]: { calls: 1, failures: 0 }, [refused]: { calls: 1, failures: 1 } })
})

t.test('a retried 503 goes to the next upstream', async (t) => {
  const { servers, status, api } = await setup(t, 2, { retry: { attempts: 3, baseDelay: 1, budget: false } })
  status[0] = 503
  const res = await api.get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(res.url, `${servers[1].url}/x`)
  await res.dump()
  t.same(servers.map((s) => s.requests.length), [1, 1])
})

t.test('every upstream open: CircuitOpenError at once, Retry-After = the shortest wait until one half-opens', async (t) => {
  const { servers, status, breaker, counts, get, api } = await setup(t, 2, { breaker: { ...kSmall, resetAfter: 1500 } })
  const [a, b] = servers
  status[0] = 503
  for (let i = 0; i < 3; i++) await get() // a 503, b 200, a 503: a opens
  t.equal(breaker().upstreams[a.url].state, 'open')
  await sleep(600)
  status[1] = 503
  for (let i = 0; i < 2; i++) await get() // b 503, b 503: b opens (a is still open)
  t.same(counts(), [2, 3])
  t.equal(breaker().state, 'open', 'open once every upstream is open')
  const err = await api.get('/x').then(() => undefined, (e: unknown) => e) as InstanceType<typeof CircuitOpenError>
  t.ok(err instanceof CircuitOpenError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', statusCode: 503, service: 'api', method: 'GET', url: '/x' })
  t.match(err.message, /^GET api \/x: all 2 upstreams are open \(circuit breakers; the first half-opens in \d+ ms\)$/)
  t.equal(err.retryAfter, 1, 'a half-opens in about 900 ms (1 s), b in about 1500 ms (2 s): the shortest wins')
  t.same(err.headers, { 'retry-after': '1' })
  t.same(counts(), [2, 3], 'the refused call touched no upstream')
  const stats = breaker()
  t.match(stats, { state: 'open', opens: 2, rejected: 1 })
  t.ok(stats.retryAfterMs > 0 && stats.retryAfterMs <= 900, `retryAfterMs ${stats.retryAfterMs} is a's wait`)
})

t.test('a probe in flight on the only upstream not open: the refusal says so', async (t) => {
  let delay = 0
  const a = await startServer((_req, res) => { setTimeout(() => sendJson(res, 503, {}), delay) })
  const b = await startServer((_req, res) => { setTimeout(() => sendJson(res, 503, {}), delay) })
  const services = createHttpServices({
    services: { api: { baseUrl: [a.url, b.url], retry: false, throwHttpErrors: false, breaker: { ...kSmall, resetAfter: 150 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  const api = services.client('api')
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  t.equal((services.stats().api.breaker as Stats).state, 'open')
  await sleep(200)
  t.equal((services.stats().api.breaker as Stats).state, 'halfOpen', 'half-open once some upstream is half-open')
  delay = 100
  const probeA = api.get('/p')
  const probeB = api.get('/p')
  await t.rejects(api.get('/x'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', message: /all 2 upstreams are open \(circuit breakers; 2 half-open with a probe in flight\)/, retryAfter: 1 })
  t.equal((await probeA).status, 503)
  t.equal((await probeB).status, 503)
  t.equal((services.stats().api.breaker as Stats).state, 'open', 'failed probes open them again')
})

t.test('stats: per-upstream breakers, and the Agent\'s pools summed and per origin', async (t) => {
  const { servers, services, get } = await setup(t, 2)
  for (let i = 0; i < 4; i++) await get()
  const stats = services.stats().api
  t.same(Object.keys((stats.breaker as Stats).upstreams), servers.map((s) => s.url))
  t.match(stats.breaker, { state: 'closed', calls: 4, successes: 4, failures: 0, opens: 0 })
  const pools = stats.pools as Record<string, Record<string, number>>
  t.same(Object.keys(pools).sort(), servers.map((s) => s.url).sort(), 'one pool per upstream')
  t.equal(stats.pool?.connected, pools[servers[0].url].connected + pools[servers[1].url].connected, 'pool sums them')
  t.equal(stats.pool?.connected, 2)
})

t.test('several baseUrls without a breaker keep the BalancedPool and one pool figure', async (t) => {
  const { services, get } = await setup(t, 2, { breaker: false })
  await get()
  const stats = services.stats().api
  t.equal(stats.breaker, undefined)
  t.equal(stats.pools, undefined)
  t.type(stats.pool?.connected, 'number')
})

t.test('a hedge goes to another upstream than the attempt it hedges', async (t) => {
  const slow = await startServer((_req, res) => { setTimeout(() => sendJson(res, 200, { who: 'slow' }), 300) })
  const fast = await startServer((_req, res) => sendJson(res, 200, { who: 'fast' }))
  const services = createHttpServices({
    services: { api: { baseUrl: [slow.url, fast.url], retry: false, hedge: { delay: 30 }, breaker: kSmall } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await slow.close(); await fast.close() })
  const res = await services.client('api').get('/h')
  t.equal(res.url, `${fast.url}/h`)
  t.same(await res.json(), { who: 'fast' })
})

t.test('the health check fails for a critical service only once every upstream is open', async (t) => {
  const status = [503, 503]
  const servers = [
    await startServer((_req, res) => sendJson(res, status[0], {})),
    await startServer((_req, res) => sendJson(res, status[1], {}))
  ]
  const app = Fastify()
  await app.register(httpServices, {
    underPressure: true,
    services: {
      core: { baseUrl: servers.map((s) => s.url), retry: false, throwHttpErrors: false, critical: true, breaker: { ...kSmall, resetAfter: 150 } }
    }
  })
  app.get('/call', async (request) => {
    const res = await request.httpClient('core').get('/x')
    await res.dump()
    return { status: res.status }
  })
  t.teardown(async () => { await app.close(); for (const s of servers) await s.close() })
  await app.ready()
  status[1] = 200
  for (let i = 0; i < 3; i++) await app.inject('/call') // a 503, b 200, a 503: a opens
  const one = await app.inject('/status')
  t.equal(one.statusCode, 200, 'one upstream open: the service can still be reached')
  t.match(one.json().httpServices.core.breaker, { state: 'closed', upstreams: { [servers[0].url]: { state: 'open' } } })
  status[1] = 503
  for (let i = 0; i < 2; i++) await app.inject('/call') // b 503 twice: b opens
  t.equal((await app.inject('/status')).statusCode, 503, 'every upstream open: unhealthy')
  await sleep(200)
  t.equal((await app.inject('/status')).statusCode, 200, 'half-open again: healthy, so traffic can bring the probes')
})

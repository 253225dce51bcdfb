import Fastify from 'fastify'
import t, { type Test } from 'tap'
import httpServices, { CircuitOpenError, ConnectionError, createHttpServices, type BreakerOptions, type HttpServicesOptions, type Logger } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { closedPort, sendJson, startServer, type Handler } from '../helpers/server'
import { waitUntil } from '../helpers/wait'
import { policyOrder, type PolicyFactory } from '../../lib/pipeline'

type LogLine = { level: number, msg: string, service?: string, breaker?: string, lastFailure?: string }

const capture = (): { logger: Logger, lines: LogLine[] } => capturePino<LogLine>()

const kSmall: BreakerOptions = { minimumRequests: 4, errorPercentage: 50, window: 10000, resetAfter: 200 }

async function setup (t: Test, handler: Handler, breaker: BreakerOptions = kSmall, baseUrl?: string) {
  const server = await startServer(handler)
  const { logger, lines } = capture()
  const services = createHttpServices({
    logger,
    services: { api: { baseUrl: baseUrl ?? server.url, retry: false, throwHttpErrors: false, breaker } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const breakerLines = (): LogLine[] => lines.filter((l) => l.breaker !== undefined)
  return { server, services, api: services.client('api'), breakerLines }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('opens after the threshold and then fails fast with CircuitOpenError without touching the server', async (t) => {
  const { server, services, api, breakerLines } = await setup(t, (_req, res) => sendJson(res, 503, { error: 'down' }))
  for (let i = 0; i < 4; i++) {
    const res = await api.get('/x')
    t.equal(res.status, 503, 'a counted failure still reaches the caller as the response')
    await res.dump()
  }
  t.equal((services.stats().api.breaker as { state: string }).state, 'open')
  const err = await api.get('/x').then(() => undefined, (e: unknown) => e) as InstanceType<typeof CircuitOpenError>
  t.ok(err instanceof CircuitOpenError, 'CircuitOpenError')
  t.match(err, { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', statusCode: 503, service: 'api', method: 'GET', url: '/x' })
  t.equal(err.retryAfter, 1, 'Retry-After rounds the 200 ms until half-open up to 1 s')
  t.same(err.headers, { 'retry-after': '1' })
  t.equal(server.requests.length, 4, 'the server saw only the calls made while closed')
  const opened = breakerLines()
  t.equal(opened.length, 1, 'one state change, logged once')
  t.match(opened[0], { level: 40, service: 'api', breaker: 'open', lastFailure: 'status 503', msg: 'circuit breaker opened after 4 failures of 4 calls (last: status 503): calls fail fast for 200 ms' })
})

t.test('half-opens after resetAfter, lets one probe through, and closes on its success', async (t) => {
  let status = 500
  let delay = 0
  const { server, services, api, breakerLines } = await setup(t, (_req, res) => {
    setTimeout(() => sendJson(res, status, {}), delay)
  })
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  await t.rejects(api.get('/x'), CircuitOpenError)
  status = 200
  delay = 50
  await sleep(250)
  t.equal((services.stats().api.breaker as { state: string }).state, 'halfOpen')
  const probe = api.get('/probe')
  const second = api.get('/second')
  await t.rejects(second, { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', message: /a probe is in flight/ }, 'a second call while the probe is in flight fails fast')
  t.equal((await probe).status, 200)
  t.same(server.requests.map((r) => r.url), ['/x', '/x', '/x', '/x', '/probe'], 'only the probe reached the server')
  t.equal((services.stats().api.breaker as { state: string }).state, 'closed')
  t.equal((await api.get('/after')).status, 200, 'calls flow again')
  t.same(breakerLines().map((l) => [l.breaker, l.level, l.service]), [['open', 40, 'api'], ['halfOpen', 30, 'api'], ['closed', 30, 'api']],
    'each state change logged once: open at warn, half-open and close at info, with the service name')
})

t.test('a failed probe opens the breaker again', async (t) => {
  const { server, services, api, breakerLines } = await setup(t, (_req, res) => sendJson(res, 502, {}))
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  await sleep(250)
  t.equal((await api.get('/probe')).status, 502)
  t.equal((services.stats().api.breaker as { state: string }).state, 'open')
  await t.rejects(api.get('/x'), CircuitOpenError)
  t.equal(server.requests.length, 5)
  t.same(breakerLines().map((l) => l.breaker), ['open', 'halfOpen', 'open'])
})

t.test('4xx answers never open it', async (t) => {
  const { server, services, api } = await setup(t, (_req, res) => sendJson(res, 404, { error: 'nope' }))
  for (let i = 0; i < 10; i++) await (await api.get('/x')).dump()
  const stats = services.stats().api.breaker as Record<string, unknown>
  t.match(stats, { state: 'closed', calls: 10, failures: 0, successes: 10, opens: 0 })
  t.equal(server.requests.length, 10)
})

t.test('408 and 429 count as failures, as do transport failures', async (t) => {
  let i = 0
  const { services, api } = await setup(t, (_req, res) => sendJson(res, i++ % 2 === 0 ? 408 : 429, {}))
  for (let n = 0; n < 4; n++) await (await api.get('/x')).dump()
  t.equal((services.stats().api.breaker as { state: string }).state, 'open', 'opened by 408 and 429')

  const port = await closedPort()
  const refused = await setup(t, (_req, res) => { res.end() }, kSmall, `http://127.0.0.1:${port}`)
  for (let n = 0; n < 3; n++) await t.rejects(refused.api.get('/x'), ConnectionError)
  await t.rejects(refused.api.get('/x'), { code: 'HTTP_SERVICES_ERR_CONNECTION', breaker: 'open' }, 'the failure that opened it says so')
  t.equal((refused.services.stats().api.breaker as { state: string }).state, 'open', 'opened by ECONNREFUSED')
  t.match(refused.breakerLines()[0], { breaker: 'open', lastFailure: 'ECONNREFUSED', msg: /\(last: ECONNREFUSED\)/ })
  await t.rejects(refused.api.get('/x'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', breaker: 'open' })
  t.match(refused.services.stats().api, { failures: 5, failuresBy: { connection: 4, breakerOpen: 1 } })
})

t.test('the caller\'s aborts do not count', async (t) => {
  const { services, api } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, 200, {}), 200) })
  for (let n = 0; n < 6; n++) {
    const ac = new AbortController()
    const call = api.get('/slow', { signal: ac.signal })
    setTimeout(() => ac.abort(), 10)
    await t.rejects(call, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  }
  t.match(services.stats().api.breaker, { state: 'closed', failures: 0 })
})

t.test('counts the failures of a window only: below minimumRequests it stays closed', async (t) => {
  const { services, api } = await setup(t, (_req, res) => sendJson(res, 500, {}), { ...kSmall, minimumRequests: 20 })
  for (let n = 0; n < 19; n++) await (await api.get('/x')).dump()
  t.match(services.stats().api.breaker, { state: 'closed', failures: 19 })
})

t.test('a Fastify route that hits an open breaker answers 503 with Retry-After', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const app = Fastify()
  await app.register(httpServices, {
    services: { api: { baseUrl: server.url, retry: false, breaker: { ...kSmall, resetAfter: 5000 } } }
  })
  app.get('/', async (request) => await request.httpClient('api').getJson('/x'))
  t.teardown(async () => { await app.close(); await server.close() })
  for (let n = 0; n < 4; n++) t.equal((await app.inject('/')).statusCode, 502, 'status errors while closed')
  const res = await app.inject('/')
  t.equal(res.statusCode, 503)
  t.match(res.headers['retry-after'], /^[45]$/, 'seconds until half-open')
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', statusCode: 503 })
  t.equal(server.requests.length, 4)
})

t.test('inside retry: every attempt counts, and the attempt that opens the breaker ends the call with its own answer', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, { error: 'down' }))
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, retry: { attempts: 5, baseDelay: 1, budget: false }, breaker: kSmall } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const err = await services.client('api').get('/x').then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, detail: 'down', attempts: 4, breaker: 'open' },
    'the fourth attempt opened the breaker: no fifth one is tried, and the 503 is not lost')
  t.equal(server.requests.length, 4, 'four attempts reached the server, no more')
  t.match(services.stats().api.breaker, { state: 'open', failures: 4, rejected: 0 })
  t.match(services.stats().api, { failures: 1, failuresBy: { status: 1, breakerOpen: 0 } })
})

t.test('a probe the caller aborts says nothing: the breaker stays half-open and the next call probes', async (t) => {
  let delay = 0
  let status = 500
  const { server, services, api, breakerLines } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, status, {}), delay) })
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  await sleep(250)
  delay = 200
  const ac = new AbortController()
  const probe = api.get('/probe', { signal: ac.signal })
  setTimeout(() => ac.abort(), 10)
  await t.rejects(probe, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  t.equal((services.stats().api.breaker as { state: string }).state, 'halfOpen', 'an abort says nothing about the upstream: still half-open')
  delay = 0
  status = 200
  t.equal((await api.get('/next')).status, 200, 'the next call is the probe')
  t.equal(server.requests.at(-1)?.url, '/next')
  t.equal((services.stats().api.breaker as { state: string }).state, 'closed', 'and its success closes the breaker')
  t.same(breakerLines().map((l) => l.breaker), ['open', 'halfOpen', 'closed'])
})

t.test('closeAfter: that many successful probes in a row close it, one at a time; a failed one opens it again', async (t) => {
  let status = 503
  const { server, services, api, breakerLines } = await setup(t, (_req, res) => sendJson(res, status, {}), { ...kSmall, closeAfter: 3 })
  const state = (): string => (services.stats().api.breaker as { state: string }).state
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  t.equal(state(), 'open')
  await waitUntil('half-open', () => state() === 'halfOpen')
  status = 200
  t.equal((await api.get('/p1')).status, 200)
  t.equal(state(), 'halfOpen', 'one good probe of three: still half-open')
  const p2 = api.get('/p2')
  await t.rejects(api.get('/refused'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', message: /a probe is in flight/ }, 'probes go one at a time')
  t.equal((await p2).status, 200)
  status = 503
  t.equal((await api.get('/p3')).status, 503)
  t.equal(state(), 'open', 'the third probe failed: open again')
  t.match(breakerLines().at(-1), { breaker: 'open', probe: 'failed', lastFailure: 'status 503', msg: 'circuit breaker opened again: a probe failed (status 503): calls fail fast for 200 ms' })
  await waitUntil('half-open again', () => state() === 'halfOpen')
  status = 200
  for (const p of ['/q1', '/q2']) t.equal((await api.get(p)).status, 200)
  t.equal(state(), 'halfOpen', 'a failed probe restarts the count')
  t.equal((await api.get('/q3')).status, 200)
  t.equal(state(), 'closed', 'three in a row close it')
  t.match(services.stats().api.breaker, { calls: 0, failures: 0 }, 'a closed breaker starts with an empty window')
  t.same(server.requests.map((r) => r.url).filter((u) => u !== '/x'), ['/p1', '/p2', '/p3', '/q1', '/q2', '/q3'])
  t.same(breakerLines().map((l) => l.breaker), ['open', 'halfOpen', 'open', 'halfOpen', 'closed'])
})

t.test('a timeout whose limit the caller chose (a per-call timeout, an inbound deadline) counts for nothing', async (t) => {
  const { server, services, api } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, 200, {}), 300) })
  for (let n = 0; n < 6; n++) await t.rejects(api.get('/slow', { timeout: 20 }), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
  t.match(services.stats().api.breaker, { state: 'closed', failures: 0 }, 'six 20 ms timeouts of a healthy but slower upstream did not open it')
  t.equal((await api.get('/slow')).status, 200, 'calls still reach the upstream')
  t.ok(server.requests.length >= 1)
})

t.test('timeouts of an attempt count as failures', async (t) => {
  const server = await startServer((_req, res) => { setTimeout(() => sendJson(res, 200, {}), 300) })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, retry: false, timeout: { attempt: 30 }, breaker: kSmall } }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  for (let n = 0; n < 4; n++) await t.rejects(services.client('api').get('/slow'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt' })
  t.match(services.stats().api.breaker, { state: 'open', failures: 4 })
})

t.test('a hung upstream opens the breaker through total timeouts alone', async (t) => {
  const server = await startServer(() => { /* never answers */ })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, retry: false, timeout: { total: 50 }, breaker: kSmall } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  for (let n = 0; n < 4; n++) await t.rejects(services.client('api').get('/hang'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
  t.match(services.stats().api.breaker, { state: 'open', failures: 4 })
  await t.rejects(services.client('api').get('/hang'), CircuitOpenError)
})

t.test('a probe still out when the breaker was reset is not the next half-open\'s probe', async (t) => {
  let status = 503
  const { services, api } = await setup(t, (req, res) => {
    // /p1 answers 200 late, /p2 answers 503 later still; the others at once with `status`.
    const delay = req.url === '/p1' ? 1200 : req.url === '/p2' ? 2500 : 0
    const answer = req.url === '/p1' ? 200 : req.url === '/p2' ? 503 : status
    setTimeout(() => sendJson(res, answer, {}), delay)
  }, { ...kSmall, resetAfter: 300 })
  const state = (): string => (services.stats().api.breaker as { state: string }).state
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  await waitUntil('half-open', () => state() === 'halfOpen')
  const p1 = api.get('/p1')
  await sleep(50)
  services.reset()
  t.equal(state(), 'closed', 'reset() closed it with the probe still out')
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  t.equal(state(), 'open', 'and new failures opened it again')
  await waitUntil('half-open again', () => state() === 'halfOpen')
  const p2 = api.get('/p2')
  t.equal((await p1).status, 200, 'the old probe answers 200 while the new one is out')
  t.equal(state(), 'halfOpen', 'the old probe\'s success did not close the breaker')
  await t.rejects(api.get('/x'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', message: /a probe is in flight/ }, 'the new probe is still the only one')
  t.equal((await p2).status, 503)
  t.equal(state(), 'open', 'the new probe\'s failure decides')
  status = 200
})

t.test('a policy below the breaker that throws instead of rejecting leaves no probe stuck in flight', async (t) => {
  let status = 503
  let throwNow = false
  const slot = policyOrder.find(([name]) => name === 'auth') as [string, PolicyFactory | undefined]
  const before = slot[1]
  slot[1] = (service) => service.name !== 'api'
    ? undefined
    : (ctx, next) => {
        if (throwNow) throw new Error('thrown by a policy below the breaker')
        return next(ctx)
      }
  t.teardown(() => { slot[1] = before })
  const { services, api } = await setup(t, (_req, res) => sendJson(res, status, {}))
  const state = (): string => (services.stats().api.breaker as { state: string }).state
  for (let i = 0; i < 4; i++) await (await api.get('/x')).dump()
  await waitUntil('half-open', () => state() === 'halfOpen')
  throwNow = true
  await t.rejects(api.get('/probe'), { message: 'thrown by a policy below the breaker' })
  throwNow = false
  status = 200
  t.equal((await api.get('/next')).status, 200, 'the next call is let through as the probe')
  t.equal(state(), 'closed')
})

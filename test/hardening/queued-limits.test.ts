import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import httpServices, { createHttpServices, type HttpServicesOptions } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'

// Issue 16, part 2: total and attempt timeouts, request deadlines and caller signals must end a call on time while it
// waits for a connection (undici's queue, a connect or TLS handshake), not when undici gets to its request.

/** Every limit below is 500 ms (800 for requestDeadline); a call must settle well before this. */
const kLate = 2000
/** Longest a test waits for one call before failing with a message (the slow call answers after 8 s, or when told). */
const kHung = 3000

/** How a call ended, and when, measured from its start; `hung` when it had not settled after `kHung` ms. */
interface Outcome { error: unknown, elapsed: number, hung: boolean }

async function outcome (call: () => Promise<unknown>): Promise<Outcome> {
  const start = performance.now()
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(resolve, kHung, 'hung') })
  const settled = call().then(() => ({ error: undefined }), (error: unknown) => ({ error }))
  const first = await Promise.race([settled, hung])
  clearTimeout(timer)
  return first === 'hung'
    ? { error: undefined, elapsed: performance.now() - start, hung: true }
    : { error: first.error, elapsed: performance.now() - start, hung: false }
}

/** Asserts that a call ended with `expected` after at least `atLeast` ms (the limit said so) and before `kLate`. */
function endedOnTime (t: Test, label: string, o: Outcome, expected: object, atLeast: number): void {
  if (o.hung) {
    t.fail(`${label}: not settled after ${kHung} ms`)
    return
  }
  t.match(o.error, expected, `${label}: the right error`)
  t.ok(o.elapsed < kLate, `${label}: settled in ${Math.round(o.elapsed)} ms, under ${kLate} ms`)
  // The message names the limit: it must not have fired early either.
  t.ok(o.elapsed >= atLeast, `${label}: not before its limit (${Math.round(o.elapsed)} ms)`)
}

interface Limit { name: string, options: () => Record<string, unknown>, error: object }

const kLimits: Limit[] = [
  { name: 'timeout: 500', options: () => ({ timeout: 500 }), error: { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total', timeout: 500, message: /total timeout after 500 ms/ } },
  { name: 'timeout: { total: 500 }', options: () => ({ timeout: { total: 500 } }), error: { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total', timeout: 500, message: /total timeout after 500 ms/ } },
  { name: 'timeout: { attempt: 500 }', options: () => ({ timeout: { attempt: 500 } }), error: { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt', timeout: 500, message: /attempt timeout after 500 ms/ } },
  { name: 'signal: AbortSignal.timeout(500)', options: () => ({ signal: AbortSignal.timeout(500) }), error: { code: 'HTTP_SERVICES_ERR_ABORTED', message: /aborted by the caller's signal/ } }
]

type Client = ReturnType<ReturnType<typeof createHttpServices>['client']>

/** getJson and get (whose body is read): the two dispatch paths of the transport. */
const kHelpers: Array<[string, (api: Client, path: string, options: Record<string, unknown>) => Promise<unknown>]> = [
  ['getJson', async (api, path, options) => await api.getJson(path, options)],
  ['get', async (api, path, options) => await (await api.get(path, options)).json()]
]

/**
 * A server whose `/slow` answers after 8 s, or when `answer()` is called (its timers cleared at teardown); other
 * paths answer at once.
 */
async function slowServer (t: Test): Promise<TestServer & { answer: () => void }> {
  const timers = new Map<NodeJS.Timeout, () => void>()
  const server = await startServer((req, res) => {
    if (req.url !== '/slow') return sendJson(res, 200, { url: req.url })
    const send = (): void => {
      clearTimeout(timer)
      timers.delete(timer)
      sendJson(res, 200, { url: req.url })
    }
    const timer = setTimeout(send, 8000)
    timers.set(timer, send)
  })
  t.teardown(async () => {
    for (const timer of timers.keys()) clearTimeout(timer)
    await server.close()
  })
  return Object.assign(server, { answer: () => { for (const send of [...timers.values()]) send() } })
}

/** A TCP server on 127.0.0.1 that accepts connections and never writes: a TLS handshake to it never ends. */
async function silentServer (t: Test): Promise<{ url: string, sockets: Set<Socket>, destroySockets: () => void }> {
  const sockets = new Set<Socket>()
  const server = createNetServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const destroySockets = (): void => { for (const s of sockets) s.destroy() }
  t.teardown(async () => {
    destroySockets()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets, destroySockets }
}

t.test('a saturated pool: every limit ends a call waiting for the connection on time, for getJson and get, and its request is never sent', async (t) => {
  const server = await slowServer(t)
  const services = createHttpServices({ closeTimeout: 1000, services: { api: { baseUrl: server.url, connections: 1, retry: false } } } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close() })
  const api = services.client('api')
  const slow = api.getJson('/slow')
  await waitUntil('the server holds the slow call', () => server.requests.length === 1)

  const runs = kHelpers.flatMap(([helper, call]) => kLimits.map((limit, i) => ({
    label: `${helper} with ${limit.name}`,
    limit,
    result: outcome(async () => await call(api, `/${helper}/${i}`, limit.options()))
  })))
  for (const run of runs) endedOnTime(t, run.label, await run.result, run.limit.error, 450)

  server.answer()
  t.same(await within('the slow call answers', slow), { url: '/slow' })
  t.same(await api.getJson('/after'), { url: '/after' }, 'the connection serves the next call')
  t.same(await (await api.get('/after-get')).json(), { url: '/after-get' })
  // undici aborts a request whose attempt gave up before it is written: the server never sees one.
  t.same(server.requests.map((r) => r.url), ['/slow', '/after', '/after-get'], 'no request of the calls that gave up was sent')
  t.match(services.stats().api, { inFlight: 0, pool: { size: 0 } }, 'undici holds nothing any more')
})

t.test('a bulkhead keeps the slot of a call that gave up in undici\'s queue until undici drops it, so a flood of them cannot grow that queue', async (t) => {
  const server = await slowServer(t)
  const services = createHttpServices({
    closeTimeout: 1000,
    services: { api: { baseUrl: server.url, connections: 1, retry: false, bulkhead: { maxConcurrent: 3, maxQueue: 1000, queueTimeout: 600 } } }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close() })
  const api = services.client('api')
  const slow = api.getJson('/slow')
  await waitUntil('the server holds the slow call', () => server.requests.length === 1)

  // 60 calls, 10 every 100 ms, each giving up after 200 ms: all but two of them wait in the bulkhead, not in undici.
  let most = 0
  const sample = setInterval(() => { most = Math.max(most, services.stats().api.pool?.size ?? 0) }, 10)
  t.teardown(() => clearInterval(sample))
  const runs: Array<Promise<Outcome>> = []
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 10; i++) runs.push(outcome(async () => await api.getJson(`/flood/${round}/${i}`, { timeout: 200 })))
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const outcomes = await Promise.all(runs)
  t.equal(outcomes.filter((o) => o.hung).length, 0, 'every call settled')
  t.ok(outcomes.every((o) => o.elapsed < kLate), `every call settled under ${kLate} ms`)
  const phases = new Set(outcomes.map((o) => (o.error as { phase?: string } | undefined)?.phase))
  t.same([...phases], ['total'], 'each call ended by its total timeout, in undici\'s queue or in the bulkhead\'s (before its queueTimeout)')
  t.match(services.stats().api.bulkhead, { active: 1, abandoned: 2 }, 'the two requests left in undici keep their slots')

  // Calls waiting for a slot get it as the slow call ends and as undici drops each abandoned request.
  const patient = ['/after/1', '/after/2', '/after/3'].map(async (path) => await api.getJson(path))
  t.match(services.stats().api.bulkhead, { active: 1, queued: 3, abandoned: 2 })
  server.answer()
  t.same(await within('the slow call answers', slow), { url: '/slow' })
  t.same(await within('the waiting calls are answered', Promise.all(patient)), [{ url: '/after/1' }, { url: '/after/2' }, { url: '/after/3' }])
  t.same(server.requests.map((r) => r.url), ['/slow', '/after/1', '/after/2', '/after/3'], 'no request of the calls that gave up was sent')
  t.ok(most <= 3, `undici never held more than maxConcurrent requests (most: ${most})`)
  t.match(services.stats().api, { inFlight: 0, pool: { size: 0 }, bulkhead: { active: 0, queued: 0, abandoned: 0 } })
})

t.test('a total timeout holds while a call waits in the bulkhead or for a rate-limit permit', async (t) => {
  const server = await slowServer(t)
  const services = createHttpServices({
    closeTimeout: 1000,
    services: {
      slots: { baseUrl: server.url, retry: false, bulkhead: { maxConcurrent: 1, maxQueue: 10, queueTimeout: 10000 } },
      permits: { baseUrl: server.url, retry: false, rateLimit: { rate: 1, interval: 5000, maxWait: 10000 } }
    }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close() })
  const slots = services.client('slots')
  const slow = slots.getJson('/slow')
  await waitUntil('the server holds the slow call', () => server.requests.length === 1)
  endedOnTime(t, 'a call waiting for a bulkhead slot', await outcome(async () => await slots.getJson('/queued', { timeout: 500 })),
    { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total', timeout: 500 }, 450)
  t.match(services.stats().slots.bulkhead, { active: 1, queued: 0 }, 'the timed-out call left the queue')

  const permits = services.client('permits')
  t.same(await permits.getJson('/first'), { url: '/first' }, 'the first call takes the only permit')
  // The next permit is 5 s away: a wait past the call's total timeout is not started (RateLimitedError at once).
  const o = await outcome(async () => await permits.getJson('/second', { timeout: 500 }))
  t.notOk(o.hung, 'the call settled')
  t.match(o.error, { code: 'HTTP_SERVICES_ERR_RATE_LIMITED' }, 'refused by the rate limiter')
  t.ok(o.elapsed < 500, `at once, not after the 5 s wait (${Math.round(o.elapsed)} ms)`)

  server.answer()
  t.same(await within('the slow call answers', slow), { url: '/slow' })
  t.same(server.requests.map((r) => r.url), ['/slow', '/first'], 'neither call that gave up was sent')
})

t.test('a TLS handshake that never answers: total and attempt timeouts and a signal end the call on time, not timeout.connect', async (t) => {
  const silent = await silentServer(t)
  const services = createHttpServices({
    closeTimeout: 1000,
    services: { tls: { baseUrl: silent.url, retry: false, timeout: { connect: 8000 } } }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { silent.destroySockets(); await services.close() })
  const api = services.client('tls')
  const runs = kHelpers.flatMap(([helper, call]) => kLimits.map((limit) => ({
    label: `${helper} with ${limit.name}`,
    limit,
    result: outcome(async () => await call(api, '/x', limit.options()))
  })))
  for (const run of runs) endedOnTime(t, run.label, await run.result, run.limit.error, 450)
  t.ok(silent.sockets.size > 0, 'the calls did reach the silent server')
  // The connection fails: undici fails the requests it still held, and nobody hears of it.
  silent.destroySockets()
  await waitUntil('undici lets go of the requests', () => (services.stats().tls.pool?.size ?? 0) === 0)
  t.equal(services.stats().tls.inFlight, 0)
})

/** An app with `options`, a service `busy` (one connection, held by a slow call) and a service `tls` (silent). */
async function gateway (t: Test, options: Record<string, unknown>): Promise<ReturnType<typeof Fastify>> {
  const server = await slowServer(t)
  const silent = await silentServer(t)
  const app = Fastify()
  await app.register(httpServices, {
    closeTimeout: 1000,
    ...options,
    defaults: { retry: false },
    services: {
      busy: { baseUrl: server.url, connections: 1 },
      tls: { baseUrl: silent.url, timeout: { connect: 8000 } }
    }
  } as HttpServicesOptions)
  app.get('/:service/:helper', async (request) => {
    const { service, helper } = request.params as { service: string, helper: string }
    const api = request.httpClient(service)
    return helper === 'getJson' ? await api.getJson('/x') : await (await api.get('/x')).json()
  })
  await app.ready()
  t.teardown(async () => { silent.destroySockets(); await app.close() })
  // The only connection of `busy` is taken for 4 s.
  void app.httpServices.client('busy').getJson('/slow').catch(() => {})
  await waitUntil('the server holds the slow call', () => server.requests.length === 1)
  return app
}

async function routeOutcomes (t: Test, app: ReturnType<typeof Fastify>, headers: Record<string, string>, atLeast: number): Promise<void> {
  const runs = ['busy', 'tls'].flatMap((service) => kHelpers.map(([helper]) => ({
    label: `${service} ${helper}`,
    result: outcome(async () => {
      const res = await app.inject({ url: `/${service}/${helper}`, headers })
      throw Object.assign(res.json(), { statusCode: res.statusCode })
    })
  })))
  for (const run of runs) {
    endedOnTime(t, run.label, await run.result, { statusCode: 504, code: 'HTTP_SERVICES_ERR_TIMEOUT', message: /the inbound request's deadline passed/ }, atLeast)
  }
}

t.test('requestDeadline ends a route\'s call that waits for a connection or a TLS handshake', async (t) => {
  const app = await gateway(t, { requestDeadline: 800 })
  await routeOutcomes(t, app, {}, 750)
})

t.test('a deadline passed inbound (deadlineHeader) ends a route\'s call that waits for a connection or a TLS handshake', async (t) => {
  const app = await gateway(t, { deadlineHeader: 'x-request-timeout-ms' })
  await routeOutcomes(t, app, { 'x-request-timeout-ms': '500' }, 450)
})

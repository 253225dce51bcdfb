import { Writable } from 'node:stream'
import type { ServerResponse } from 'node:http'
import t from 'tap'
import pino from 'pino'
import { createHttpServices, HttpClient, HttpServices, silentLogger, type Logger } from '../index'
import { closedPort, sendJson, startServer } from './helpers/server'
import { capturePino } from './helpers/pino-lines'
import { policyOrder, type PolicyFactory } from '../lib/pipeline'

t.test('createHttpServices: open, client, close, without Fastify', async (t) => {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url, rid: seen.headers['x-request-id'] ?? null }))
  t.teardown(async () => await server.close())
  const services = createHttpServices({ defaults: { retry: false }, services: { users: { baseUrl: server.url } } })
  t.ok(services instanceof HttpServices)
  await t.rejects(services.client('users').get('/'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', message: /not open yet/ }, 'calls before open are refused')
  await services.open()
  await services.open()
  const users = services.client('users')
  t.ok(users instanceof HttpClient)
  t.equal(users.service, 'users')
  t.same(await users.getJson('/me'), { url: '/me', rid: null }, 'outside a request no request id is sent')
  await services.close()
  await services.close()
  await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
  await services.open()
  await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' }, 'a closed registry does not reopen')
  t.equal(server.requests.length, 1)
})

t.test('the logger option takes a pino logger; each service logs through a child bound to its name', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } })
  const logger = pino({ level: 'debug' }, stream)
  const services = createHttpServices({
    logger,
    defaults: { retry: false },
    services: { billing: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } }
  })
  await services.open()
  t.teardown(async () => await services.close())
  services.client('billing').logger.info({ job: 'nightly' }, 'from a worker')
  await new Promise((resolve) => setImmediate(resolve))
  t.match(lines.find((l) => /verification is off/.test(String(l.msg))), { level: 40, service: 'billing' })
  t.match(lines.find((l) => l.msg === 'from a worker'), { level: 30, service: 'billing', job: 'nightly' })
})

t.test('without a logger nothing is logged (and nothing throws)', async (t) => {
  t.equal(silentLogger.child({ a: 1 }), silentLogger)
  const services = createHttpServices({ services: { a: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } } })
  await services.open()
  await services.close()
  t.pass()
})

t.test('a minimal logger object works too (only debug/info/warn/error/child)', async (t) => {
  const calls: string[] = []
  const logger: Logger = {
    debug: () => { calls.push('debug') },
    info: () => { calls.push('info') },
    warn: (_o, msg) => { calls.push(`warn ${msg ?? ''}`) },
    error: () => { calls.push('error') },
    child: () => logger
  }
  const services = createHttpServices({ logger, services: { a: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } } })
  await services.open()
  await services.close()
  t.match(calls, [/^warn TLS certificate verification is off/])
})

t.test('stats() reports each service: name, origins, lifecycle, policies, counters and pool counters', async (t) => {
  const server = await startServer((req, res) => {
    if (req.url === '/v1/fail') { res.writeHead(500); res.end('no'); return }
    res.end('ok')
  })
  t.teardown(async () => await server.close())
  const services = createHttpServices({
    defaults: { retry: false },
    services: { api: { baseUrl: `${server.url}/v1`, connections: 4 }, idle: { baseUrl: 'http://127.0.0.1:1' } }
  })
  const before = services.stats()
  t.same(Object.keys(before), ['api', 'idle'])
  t.match(before.api, { name: 'api', origins: [server.url], lifecycle: 'created', requests: 0, attempts: 0, failures: 0, inFlight: 0 })
  t.equal(before.api.pool, undefined, 'no pool before open')
  await services.open()
  t.teardown(async () => await services.close())
  const api = services.client('api')
  await (await api.get('/ok')).text()
  await t.rejects(api.get('/fail'), { code: 'HTTP_SERVICES_ERR_STATUS' })
  await t.rejects(services.client('idle').get('/'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  const after = services.stats()
  t.match(after.api, { name: 'api', lifecycle: 'open', requests: 2, inFlight: 0 })
  t.ok(Array.isArray(after.api.policies), 'policies is the list of policy names in the chain')
  t.match(after.idle, { requests: 1, failures: 1, inFlight: 0 }, 'a transport failure is counted')
  t.match(after.api, { failures: 1, failuresBy: { status: 1, connection: 0 } }, 'so is an error status the call throws on')
  t.match(after.idle, { failuresBy: { connection: 1, status: 0 } })
  t.same(Object.keys(after.api.pool ?? {}).sort(), ['connected', 'free', 'pending', 'queued', 'running', 'size'])
  for (const value of Object.values(after.api.pool ?? {})) t.type(value, 'number')
  t.equal(after.api.pool?.running, 0)
  t.same(JSON.parse(JSON.stringify(services.stats())).api.name, 'api', 'stats are plain JSON')
})

t.test('failures counts every call that ended in an error, by kind; a success or an answered status adds nothing', async (t) => {
  const server = await startServer((req, res) => {
    if (req.url === '/fail') sendJson(res, 500, { error: 'boom' })
    else if (req.url === '/bad-json') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{nope') }
    else if (req.url === '/slow') setTimeout(() => sendJson(res, 200, {}), 300)
    else sendJson(res, 200, { ok: true })
  })
  const port = await closedPort()
  const services = createHttpServices({
    defaults: { retry: false },
    services: {
      api: { baseUrl: server.url, timeout: { attempt: 50 } },
      plain: { baseUrl: server.url },
      refused: { baseUrl: `http://127.0.0.1:${port}` },
      limited: { baseUrl: server.url, rateLimit: { rate: 1, interval: 60_000, burst: 1 } },
      narrow: { baseUrl: server.url, bulkhead: { maxConcurrent: 1, maxQueue: 0 } },
      fragile: { baseUrl: server.url, breaker: { minimumRequests: 1, errorPercentage: 1, resetAfter: 30_000 } }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  t.same(await api.getJson('/ok'), { ok: true })
  t.equal((await api.get('/fail', { throwHttpErrors: false })).status, 500, 'an answered status the call does not throw on')
  await t.rejects(api.getJson('/fail'), { code: 'HTTP_SERVICES_ERR_STATUS' })
  await t.rejects(api.get('/slow'), { code: 'HTTP_SERVICES_ERR_TIMEOUT' })
  await t.rejects(api.getJson('/bad-json'), { code: 'HTTP_SERVICES_ERR_RESPONSE_PARSE' })
  t.match(services.stats().api, {
    requests: 5,
    failures: 3,
    failuresBy: { status: 1, timeout: 1, connection: 0, breakerOpen: 0, bulkheadRejected: 0, rateLimited: 0, aborted: 0, other: 1 }
  })

  const ac = new AbortController()
  const aborted = services.client('plain').get('/slow', { signal: ac.signal })
  setTimeout(() => ac.abort(), 20)
  await t.rejects(aborted, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  t.match(services.stats().plain, { failures: 1, failuresBy: { aborted: 1 } })

  await t.rejects(services.client('refused').get('/'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  t.match(services.stats().refused, { failures: 1, failuresBy: { connection: 1 } })

  const limited = services.client('limited')
  await (await limited.get('/ok')).dump()
  await t.rejects(limited.get('/ok'), { code: 'HTTP_SERVICES_ERR_RATE_LIMITED' })
  t.match(services.stats().limited, { failures: 1, failuresBy: { rateLimited: 1 } })

  const narrow = services.client('narrow')
  const slow = narrow.getJson('/slow')
  await t.rejects(narrow.get('/ok'), { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' })
  t.same(await slow, {})
  t.match(services.stats().narrow, { failures: 1, failuresBy: { bulkheadRejected: 1 } })

  const fragile = services.client('fragile')
  await t.rejects(fragile.get('/fail'), { code: 'HTTP_SERVICES_ERR_STATUS', breaker: 'open' }, 'the failure that opened the breaker')
  await t.rejects(fragile.get('/ok'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', breaker: 'open' })
  t.match(services.stats().fragile, { failures: 2, failuresBy: { status: 1, breakerOpen: 1 } })
})

t.test('reset() forgets breakers, retry budget, rate limiter, counters and stats; calls in flight keep their bulkhead slot', async (t) => {
  let release: (() => void) | undefined
  const server = await startServer((req, res) => {
    if (req.url === '/fail') sendJson(res, 503, { error: 'down' })
    else if (req.url === '/held') release = () => sendJson(res as ServerResponse, 200, { held: true })
    else sendJson(res, 200, { ok: true })
  })
  const port = await closedPort()
  const { logger, lines } = capturePino<{ msg: string, breaker?: string }>()
  const services = createHttpServices({
    logger,
    services: {
      api: {
        baseUrl: server.url,
        retry: { attempts: 1, baseDelay: 1, budget: { ratio: 0, minPerSecond: 0.1, window: 10_000 } },
        breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 30_000 },
        rateLimit: { rate: 5, interval: 60_000, burst: 5 }
      },
      narrow: { baseUrl: server.url, retry: false, bulkhead: { maxConcurrent: 1, maxQueue: 0 } },
      spare: { baseUrl: `http://127.0.0.1:${port}`, retry: false, fallback: () => 'spare' }
    }
  })
  await services.open()
  t.teardown(async () => { release?.(); await services.close(); await server.close() })
  const api = services.client('api')
  await t.rejects(api.get('/fail'), { code: 'HTTP_SERVICES_ERR_STATUS', attempts: 2 }, 'retried once (the budget\'s one retry), then the breaker opened')
  await t.rejects(api.get('/ok'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  t.match(services.stats().api, {
    requests: 2,
    attempts: 2,
    failures: 2,
    failuresBy: { status: 1, breakerOpen: 1 },
    retry: { retries: 1, budget: { available: 0, retries: 1 } },
    breaker: { state: 'open', opens: 1, rejected: 1, calls: 2, failures: 2 },
    rateLimit: { available: 3 }
  })
  const narrow = services.client('narrow')
  const held = narrow.getJson('/held')
  await t.rejects(narrow.get('/ok'), { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' })
  t.equal(await services.client('spare').getJson('/'), 'spare')
  t.match(services.stats().spare, { fallback: { served: 1 } })

  services.reset()
  const api0 = services.stats().api
  t.match(api0, {
    requests: 0,
    attempts: 0,
    failures: 0,
    failuresBy: { status: 0, timeout: 0, connection: 0, breakerOpen: 0, bulkheadRejected: 0, rateLimited: 0, aborted: 0, other: 0 },
    retry: { retries: 0, hedges: 0, budgetExhausted: 0, budget: { available: 1, retries: 0, requests: 0 } },
    breaker: { state: 'closed', opens: 0, rejected: 0, calls: 0, failures: 0, retryAfterMs: 0 },
    rateLimit: { available: 5, waited: 0, rejected: 0 }
  })
  t.match(services.stats().narrow, { inFlight: 1, failures: 0, bulkhead: { active: 1, rejected: 0 } }, 'the call in flight keeps its slot')
  t.match(services.stats().spare, { fallback: { served: 0, failed: 0 } })
  t.same(await api.getJson('/ok'), { ok: true }, 'the breaker lets calls through again')
  await t.rejects(narrow.get('/ok'), { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' }, 'the slot is still held')
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the held call never reached the server')), 5000)
    const poll = setInterval(() => { if (release !== undefined) { clearInterval(poll); clearTimeout(timer); resolve() } }, 5)
  })
  release?.()
  release = undefined
  t.same(await held, { held: true })
  t.same(await narrow.getJson('/ok'), { ok: true })
  t.same(lines.filter((l) => l.breaker !== undefined).map((l) => l.breaker), ['open'], 'a reset closes the breaker quietly')
})

t.test('reset() closes every upstream\'s breaker of a service with several baseUrls', async (t) => {
  const a = await startServer((_req, res) => sendJson(res, 503, {}))
  const b = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({
    services: { api: { baseUrl: [a.url, b.url], retry: false, throwHttpErrors: false, breaker: { minimumRequests: 1, resetAfter: 30_000 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  const api = services.client('api')
  for (let i = 0; i < 2; i++) await (await api.get('/x')).dump()
  await t.rejects(api.get('/x'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  t.match(services.stats().api.breaker, { state: 'open', opens: 2, rejected: 1 })
  services.get('api').reset()
  t.match(services.stats().api.breaker, {
    state: 'closed',
    opens: 0,
    rejected: 0,
    upstreams: { [a.url]: { state: 'closed', calls: 0 }, [b.url]: { state: 'closed', calls: 0 } }
  })
  const res = await api.get('/x')
  t.equal(res.url, `${a.url}/x`, 'the round robin starts again')
  await res.dump()
})

t.test('a policy calls another service of its registry at call time (ServiceRuntime.client)', async (t) => {
  const tokens = await startServer((_req, res) => sendJson(res, 200, { token: `t-${tokens.requests.length}` }))
  const billing = await startServer((_req, res, seen) => sendJson(res, 200, { authorization: seen.headers.authorization ?? null }))
  t.teardown(async () => await Promise.all([tokens.close(), billing.close()]))
  // A stand-in for OAuth2's `tokenService`, in the slot auth will fill: a token per attempt, from the service `tokens`.
  const slot = policyOrder.find(([name]) => name === 'auth') as [string, PolicyFactory | undefined]
  const before = slot[1]
  const unknown: unknown[] = []
  slot[1] = (service) => service.name !== 'billing'
    ? undefined
    : async (ctx, next) => {
      try {
        service.client('nope')
      } catch (err) {
        unknown.push(err)
      }
      const { token } = await ctx.service.client('tokens').postJson<{ token: string }>('/token', { scope: 'invoices' })
      ctx.setHeader('authorization', `Bearer ${token}`)
      return await next(ctx)
    }
  t.teardown(() => { slot[1] = before })
  const services = createHttpServices({
    defaults: { retry: false },
    services: { billing: { baseUrl: billing.url }, tokens: { baseUrl: tokens.url } }
  })
  await services.open()
  t.teardown(async () => await services.close())

  t.same(await services.client('billing').getJson('/invoices'), { authorization: 'Bearer t-1' })
  t.same(await services.client('billing').getJson('/invoices'), { authorization: 'Bearer t-2' }, 'at call time: each call asks again')
  t.match(tokens.requests, [{ method: 'POST', url: '/token', body: '{"scope":"invoices"}' }, { method: 'POST', url: '/token' }])
  t.equal(services.get('billing').client('tokens'), services.client('tokens'), "the registry's own client of the service")
  t.equal(unknown.length, 2)
  t.match(unknown[0], {
    code: 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE',
    message: 'billing: calls service "nope", which is not registered; known services: billing, tokens',
    service: 'nope',
    known: ['billing', 'tokens']
  }, 'an unknown name throws, naming both services')
  t.same(services.stats().tokens.requests, 2)
})

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import underPressure from '@fastify/under-pressure'
import t, { type Test } from 'tap'
import httpServices, { createHttpServices, type HttpServicesOptions } from '../index'
import { sendJson, startServer } from './helpers/server'

const kBreaker = { minimumRequests: 2, resetAfter: 150 }

interface LogLine { level: number, msg: string, req?: { url?: string }, [key: string]: unknown }

/** An app with two services on one failing upstream: `core` (critical) and `extra` (not). Its log lines go to `lines`. */
async function setup (t: Test, options: Partial<HttpServicesOptions> = {}) {
  let status = 503
  const server = await startServer((_req, res) => sendJson(res, status, {}))
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  await app.register(httpServices, {
    underPressure: true,
    ...options,
    services: {
      core: { baseUrl: server.url, retry: false, throwHttpErrors: false, critical: true, breaker: kBreaker },
      extra: { baseUrl: server.url, retry: false, throwHttpErrors: false, breaker: kBreaker }
    }
  })
  app.get('/call/:name', async (request) => {
    const res = await request.httpClient((request.params as { name: string }).name).get('/x')
    await res.dump()
    return { status: res.status }
  })
  t.teardown(async () => { await app.close(); await server.close() })
  await app.ready()
  return { app, server, lines, setStatus: (s: number) => { status = s } }
}

async function trip (app: FastifyInstance, name: string): Promise<void> {
  for (let i = 0; i < 2; i++) await app.inject(`/call/${name}`)
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('the status route reports ok with every service\'s stats', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject('/status')
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.status, 'ok')
  t.match(body.httpServices.core, {
    name: 'core',
    lifecycle: 'open',
    policies: ['breaker'],
    inFlight: 0,
    breaker: { state: 'closed', opens: 0, calls: 0, failures: 0 }
  })
  t.match(body.httpServices.extra, { name: 'extra', breaker: { state: 'closed' } })
})

t.test('the health check fails while a critical service\'s breaker is open, and recovers once it half-opens', async (t) => {
  const { app, setStatus } = await setup(t)
  await trip(app, 'extra')
  t.equal((await app.inject('/status')).statusCode, 200, 'an open breaker on a non-critical service keeps the app healthy')
  await trip(app, 'core')
  const res = await app.inject('/status')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'FST_UNDER_PRESSURE', statusCode: 503 })
  t.equal(res.headers['retry-after'], '1', 'seconds until the breaker half-opens')
  await sleep(200)
  t.equal((await app.inject('/status')).statusCode, 200, 'half-open: healthy again, so traffic can bring the probe')
  setStatus(200)
  t.same((await app.inject('/call/core')).json(), { status: 200 })
  t.match((await app.inject('/status')).json(), { httpServices: { core: { breaker: { state: 'closed', opens: 1 } } } })
})

t.test('with healthCheckInterval, an open critical breaker sheds inbound requests too', async (t) => {
  const { app } = await setup(t, { underPressure: { healthCheckInterval: 20 } })
  await trip(app, 'core')
  await sleep(60)
  const res = await app.inject('/call/extra')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'FST_UNDER_PRESSURE' })
})

t.test('a custom status url, and the user\'s own health check runs after ours', async (t) => {
  let healthy = true
  const { app } = await setup(t, {
    underPressure: {
      exposeStatusRoute: '/healthz',
      healthCheck: async () => healthy ? { db: 'up' } : false
    }
  })
  t.equal((await app.inject('/status')).statusCode, 404)
  const res = await app.inject('/healthz')
  t.equal(res.statusCode, 200)
  t.ok(res.json().httpServices.core !== undefined)
  healthy = false
  t.equal((await app.inject('/healthz')).statusCode, 503)
})

t.test('stats show every policy\'s state', async (t) => {
  const server = await startServer((_req, res) => { setTimeout(() => sendJson(res, 200, {}), 50) })
  const services = createHttpServices({
    services: {
      api: {
        baseUrl: server.url,
        retry: false,
        breaker: true,
        bulkhead: { maxConcurrent: 1, maxQueue: 1 },
        rateLimit: { rate: 10, burst: 3 },
        fallback: () => 'fallback'
      }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const calls = [api.getJson('/a'), api.getJson('/b'), api.getJson('/c')]
  const stats = services.stats().api
  t.same(stats.policies, ['fallback', 'rateLimit', 'bulkhead', 'breaker'], 'outermost first')
  t.match(stats, {
    inFlight: 3,
    breaker: { state: 'closed', calls: 1 },
    bulkhead: { active: 1, queued: 1, rejected: 1 },
    rateLimit: { kind: 'token-bucket', available: 0, burst: 3, rate: 10, interval: 1000 },
    fallback: { served: 0 }
  })
  t.same(await Promise.all(calls), [{}, {}, 'fallback'], 'the bulkhead\'s overflow got the fallback')
  t.match(services.stats().api, { inFlight: 0, fallback: { served: 1 }, bulkhead: { active: 0, queued: 0 } })
})

t.test('underPressure is validated, and refused when under-pressure is already registered', async (t) => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await t.rejects(async () => { await app.register(httpServices, { underPressure: 'yes' as unknown as boolean }).ready() },
    { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'underPressure', message: /underPressure: expected a boolean or an object/ })

  const twice = Fastify()
  t.teardown(async () => await twice.close())
  await twice.register(underPressure)
  await t.rejects(async () => { await twice.register(httpServices, { underPressure: true }).ready() },
    { key: 'underPressure', message: /already registered/ })
})

t.test('off by default: no status route', async (t) => {
  const app = Fastify()
  await app.register(httpServices, {})
  t.teardown(async () => await app.close())
  t.equal((await app.inject('/status')).statusCode, 404)
  t.equal(app.hasDecorator('isUnderPressure'), false)
})

t.test('the status route can be guarded with routeOpts (its body shows upstream origins and counts)', async (t) => {
  const { app } = await setup(t, {
    underPressure: {
      exposeStatusRoute: {
        url: '/status',
        routeOpts: {
          onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
            if (request.headers.authorization !== 'Bearer ops') await reply.code(401).send({ error: 'unauthorized' })
          }
        }
      }
    }
  })
  const denied = await app.inject('/status')
  t.equal(denied.statusCode, 401)
  t.notMatch(denied.body, /httpServices|127\.0\.0\.1/, 'nothing of the stats leaks')
  const allowed = await app.inject({ url: '/status', headers: { authorization: 'Bearer ops' } })
  t.equal(allowed.statusCode, 200)
  t.ok(allowed.json().httpServices.core, 'the stats are there for the operator')
})

t.test('unhealthy, the status body names the failing service and its breaker; each change of state is logged once', async (t) => {
  const { app, lines, setStatus } = await setup(t)
  await trip(app, 'extra')
  await trip(app, 'core')
  const probes = []
  for (let i = 0; i < 3; i++) probes.push(await app.inject('/status'))
  for (const res of probes) t.equal(res.statusCode, 503)
  const body = probes[0].json()
  t.match(body, {
    statusCode: 503,
    code: 'FST_UNDER_PRESSURE',
    error: 'Service Unavailable',
    status: 'unhealthy',
    message: /^unhealthy: critical service core unreachable \(circuit breaker open, half-open in \d+ ms\)$/,
    unhealthy: [{ service: 'core', breaker: 'open' }],
    httpServices: { core: { breaker: { state: 'open' } }, extra: { breaker: { state: 'open' } } }
  })
  t.equal(body.unhealthy.length, 1, 'a service that is not critical is not listed')
  t.ok(body.unhealthy[0].retryAfterMs > 0 && body.unhealthy[0].retryAfterMs <= 150, 'with the time until it half-opens')

  const health = (): LogLine[] => lines.filter((l) => l.health !== undefined)
  t.same(lines.filter((l) => l.level >= 50), [], 'no error line, no stack: a failed probe is an answer, not an error')
  t.equal(health().length, 1, 'three failed probes, one line')
  t.match(health()[0], { level: 40, health: 'unhealthy', unhealthy: [{ service: 'core', breaker: 'open' }], msg: /^health check fails: unhealthy: critical service core unreachable/ })

  await sleep(200)
  setStatus(200)
  t.equal((await app.inject('/status')).statusCode, 200)
  t.equal((await app.inject('/status')).statusCode, 200)
  t.equal(health().length, 2)
  t.match(health()[1], { level: 30, health: 'healthy', msg: 'health check passes again' })
})

t.test('the user\'s failing health check is named too, and its error is logged once, at warn', async (t) => {
  let fail = false
  const { app, lines } = await setup(t, {
    underPressure: { healthCheck: async () => { if (fail) throw new Error('db down'); return { db: 'up' } } }
  })
  t.equal((await app.inject('/status')).statusCode, 200)
  fail = true
  const res = await app.inject('/status')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { unhealthy: [{ check: 'healthCheck' }], message: 'unhealthy: the healthCheck option reported unhealthy' })
  t.notMatch(res.body, /db down/, 'the error of the check stays in the log')
  await app.inject('/status')
  const logged = lines.filter((l) => l.health !== undefined)
  t.equal(logged.length, 1)
  t.match(logged[0], { level: 40, health: 'unhealthy', err: { message: 'db down' } })
})

t.test('with healthCheckInterval, the status route still answers with what fails, not the bare shedding body', async (t) => {
  const { app } = await setup(t, { underPressure: { healthCheckInterval: 20 } })
  await trip(app, 'core')
  await sleep(60)
  t.equal((await app.inject('/call/extra')).statusCode, 503, 'other routes are shed')
  const res = await app.inject('/status')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { unhealthy: [{ service: 'core', breaker: 'open' }], httpServices: { core: { breaker: { state: 'open' } } } })
})

t.test('under one of under-pressure\'s own limits, the status route names it', async (t) => {
  const { app, lines } = await setup(t, { underPressure: { maxHeapUsedBytes: 1, sampleInterval: 10 } })
  await sleep(60)
  t.equal((await app.inject('/call/extra')).statusCode, 503, 'shed by under-pressure')
  const res = await app.inject('/status')
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'FST_UNDER_PRESSURE', message: 'unhealthy: under pressure (heapUsedBytes)', unhealthy: [{ pressure: 'heapUsedBytes' }] })
  t.equal(res.headers['retry-after'], '10')
  t.same(lines.filter((l) => l.level >= 50 && l.req?.url === '/status'), [], 'the status route logs no error')
})

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import underPressure from '@fastify/under-pressure'
import t, { type Test } from 'tap'
import httpServices, { createHttpServices, type HttpServicesOptions } from '../index'
import { sendJson, startServer } from './helpers/server'

const kBreaker = { minimumRequests: 2, resetAfter: 150 }

/** An app with two services on one failing upstream: `core` (critical) and `extra` (not). */
async function setup (t: Test, options: Partial<HttpServicesOptions> = {}) {
  let status = 503
  const server = await startServer((_req, res) => sendJson(res, status, {}))
  const app = Fastify()
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
  return { app, server, setStatus: (s: number) => { status = s } }
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
    state: 'open',
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
  t.ok(res.headers['retry-after'] !== undefined)
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

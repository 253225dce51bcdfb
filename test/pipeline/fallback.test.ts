import t, { type Test } from 'tap'
import {
  CircuitOpenError,
  ConnectionError,
  HttpResponse,
  HttpStatusError,
  createHttpServices,
  type Fallback,
  type ServiceOptions
} from '../../index'
import { syntheticResponse } from '../../lib/synthetic-response'
import { closedPort, sendJson, startServer, type Handler } from '../helpers/server'

async function setup (t: Test, handler: Handler, options: Partial<ServiceOptions> = {}) {
  const server = await startServer(handler)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, ...options } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api') }
}

/** A fallback that records what it was given and answers `value`. */
function recording (value: unknown): { fn: Fallback, seen: Array<{ error: unknown, context: unknown }> } {
  const seen: Array<{ error: unknown, context: unknown }> = []
  return { seen, fn: (error, context) => { seen.push({ error, context }); return value } }
}

t.test('the service fallback serves its value when the breaker is open, as a 200 JSON response', async (t) => {
  const fb = recording({ cached: true })
  const { server, services, api } = await setup(t, (_req, res) => sendJson(res, 503, {}), {
    throwHttpErrors: false,
    breaker: { minimumRequests: 2, resetAfter: 5000 },
    fallback: fb.fn
  })
  for (let i = 0; i < 2; i++) await (await api.get('/x')).dump()
  t.equal(fb.seen.length, 0, 'no fallback for responses the caller takes as they are (throwHttpErrors: false)')
  const res = await api.get('/x?token=abc')
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'application/json')
  t.same(await res.json(), { cached: true })
  t.equal(server.requests.length, 2, 'the server was not called')
  t.equal(fb.seen.length, 1)
  t.ok(fb.seen[0].error instanceof CircuitOpenError, 'the fallback gets the CircuitOpenError')
  t.same(fb.seen[0].context, { service: 'api', method: 'GET', path: '/x?token=abc' })
  t.match(services.stats().api, { fallback: { served: 1 } })
})

t.test('the fallback runs on a final transport failure', async (t) => {
  const port = await closedPort()
  const fb = recording(['default'])
  const services = createHttpServices({ services: { api: { baseUrl: `http://127.0.0.1:${port}`, retry: false, fallback: fb.fn } } })
  await services.open()
  t.teardown(async () => await services.close())
  t.same(await services.client('api').getJson('/list'), ['default'])
  t.ok(fb.seen[0].error instanceof ConnectionError)
})

t.test('the fallback covers the HttpStatusError the call would throw, and not a response taken as it is', async (t) => {
  const fb = recording('fallback')
  const { api } = await setup(t, (_req, res) => sendJson(res, 500, { error: 'boom' }), { fallback: fb.fn })
  t.equal(await api.getJson('/x'), 'fallback')
  const err = fb.seen[0].error as InstanceType<typeof HttpStatusError>
  t.ok(err instanceof HttpStatusError)
  t.match(err, { status: 500, detail: 'boom', statusCode: 502, url: '/x' })
  const res = await api.get('/x', { throwHttpErrors: false })
  t.equal(res.status, 500, 'with throwHttpErrors: false the 500 is the answer')
  await res.dump()
  t.equal(fb.seen.length, 1)
})

t.test('a per-call fallback overrides the service one, and works on a service without one', async (t) => {
  const own = recording('service')
  const call = recording('call')
  const { api } = await setup(t, (_req, res) => sendJson(res, 502, {}), { fallback: own.fn })
  t.equal(await api.getJson('/x', { fallback: call.fn }), 'call')
  t.equal(own.seen.length, 0)
  t.equal(await api.getJson('/x'), 'service')

  const bare = await setup(t, (_req, res) => sendJson(res, 502, {}))
  t.equal(await bare.api.getJson('/y', { fallback: call.fn }), 'call')
  await t.rejects(bare.api.getJson('/y'), HttpStatusError, 'no fallback, no recovery')
  t.equal(call.seen.length, 2)
})

t.test('a fallback may return a response of its own, or throw', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 503, {}))
  const res = await api.get('/x', { fallback: () => syntheticResponse({ status: 203, text: 'stale' }) })
  t.ok(res instanceof HttpResponse)
  t.equal(res.status, 203)
  t.equal(await res.text(), 'stale')
  const mine = new Error('mine')
  await t.rejects(api.get('/x', { fallback: () => { throw mine } }), mine)
  await t.rejects(api.get('/x', { fallback: async (err) => { throw err } }), HttpStatusError)
})

t.test('stats count the fallbacks that served a response apart from those that threw', async (t) => {
  const { api, services } = await setup(t, (_req, res) => sendJson(res, 503, {}))
  await (await api.get('/x', { fallback: () => 'value' })).dump()
  await (await api.get('/x', { fallback: () => syntheticResponse({ status: 203, text: 'stale' }) })).dump()
  await t.rejects(api.get('/x', { fallback: (err) => { throw err } }), HttpStatusError)
  await t.rejects(api.get('/x', { fallback: async () => { throw new Error('mine') } }), { message: 'mine' })
  t.match(services.stats().api.fallback, { served: 2, failed: 2 })
})

t.test('the caller\'s own abort is not recovered', async (t) => {
  const fb = recording('fallback')
  const { api } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, 200, {}), 200) }, { fallback: fb.fn })
  const ac = new AbortController()
  const call = api.get('/slow', { signal: ac.signal })
  setTimeout(() => ac.abort(), 10)
  await t.rejects(call, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  t.equal(fb.seen.length, 0)
})

t.test('the fallback sees rejections of the outer policies too (here the rate limit)', async (t) => {
  const fb = recording('later')
  const { server, api } = await setup(t, (_req, res) => sendJson(res, 200, 'fresh'), {
    rateLimit: { rate: 1, interval: 60000 },
    fallback: fb.fn
  })
  t.equal(await api.getJson('/x'), 'fresh')
  t.equal(await api.getJson('/x'), 'later')
  t.match(fb.seen[0].error, { code: 'HTTP_SERVICES_ERR_RATE_LIMITED' })
  t.equal(server.requests.length, 1)
})

t.test('a 4xx that is an answer (404) reaches the caller; 429 and 408 are failures the fallback covers', async (t) => {
  const fb = recording('fallback')
  let status = 404
  const { api } = await setup(t, (_req, res) => sendJson(res, status, { error: 'no such thing' }), { fallback: fb.fn })
  const err = await api.getJson('/x').catch((e: unknown) => e)
  t.ok(err instanceof HttpStatusError, 'the 404 is thrown, not hidden behind the fallback')
  t.match(err, { status: 404, detail: 'no such thing' })
  t.equal(fb.seen.length, 0)
  for (status of [429, 408]) t.equal(await api.getJson('/x'), 'fallback', `status ${status}`)
  t.equal(fb.seen.length, 2)
})

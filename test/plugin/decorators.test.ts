import t from 'tap'
import Fastify, { type FastifyRequest } from 'fastify'
import httpServices, { HttpClient, HttpServices, type HttpServicesOptions } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test, options: Omit<HttpServicesOptions, 'services'> = {}, extra: Record<string, unknown> = {}) {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, seen.headers))
  const lines: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'debug', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  await app.register(httpServices, {
    defaults: { retry: false },
    ...options,
    services: { api: { baseUrl: server.url, ...extra }, other: { baseUrl: server.url } }
  })
  t.teardown(async () => { await app.close(); await server.close() })
  return { app, server, lines }
}

t.test('fastify.httpServices is the registry: get, has, names, stats, client', async (t) => {
  const { app } = await setup(t)
  await app.ready()
  t.ok(app.httpServices instanceof HttpServices)
  t.same(app.httpServices.names(), ['api', 'other'])
  t.equal(app.httpServices.has('api'), true)
  t.equal(app.httpServices.has('nope'), false)
  t.equal(app.httpServices.get('api').name, 'api')
  t.ok(app.httpServices.client('api') instanceof HttpClient)
  t.equal(app.httpServices.client('api'), app.httpServices.client('api'), 'the unbound client is cached')
  t.match(app.httpServices.stats(), { api: { name: 'api', lifecycle: 'open' }, other: { name: 'other', lifecycle: 'open' } })
  t.match(await app.httpServices.client('api').getJson('/'), { host: /127\.0\.0\.1/ })
})

t.test('the dispatchers open on ready, not at registration: a call before ready is refused', async (t) => {
  const { app, server } = await setup(t)
  await app.after()
  t.equal(app.httpServices.stats().api.lifecycle, 'created')
  await t.rejects(app.httpServices.client('api').get('/'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', message: /not open yet/ })
  t.equal(server.requests.length, 0)
  await app.ready()
  t.equal(app.httpServices.stats().api.lifecycle, 'open')
})

t.test('request.httpClient(name) is cached per request, and differs between requests', async (t) => {
  const { app } = await setup(t)
  const seen: HttpClient[] = []
  app.get('/', async (request) => {
    const a = request.httpClient('api')
    const b = request.httpClient('api')
    const c = request.httpClient('other')
    seen.push(a)
    return { same: a === b, other: c !== a && c.service === 'other', bound: a !== app.httpServices.client('api') }
  })
  t.same((await app.inject('/')).json(), { same: true, other: true, bound: true })
  await app.inject('/')
  t.not(seen[0], seen[1], 'a new request gets a new client')
})

t.test('an unknown service name in a route answers 500 with a message listing the known names', async (t) => {
  const { app } = await setup(t)
  app.get('/', async (request) => request.httpClient('biling').getJson('/'))
  const res = await app.inject('/')
  t.equal(res.statusCode, 500)
  t.same(res.json(), {
    statusCode: 500,
    code: 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE',
    error: 'Internal Server Error',
    message: 'unknown service "biling"; known services: api, other'
  })
})

t.test('x-request-id is Fastify\'s request id: an untrusted inbound header is not passed on', async (t) => {
  const { app } = await setup(t)
  app.get('/', async (request) => ({ id: request.id, sent: await request.httpClient('api').getJson<Record<string, string>>('/') }))
  const forged = (await app.inject({ url: '/', headers: { 'x-request-id': 'x'.repeat(5000) } })).json()
  t.equal(forged.sent['x-request-id'], forged.id, 'the request id, not the forged header')
  const without = (await app.inject('/')).json()
  t.equal(without.sent['x-request-id'], without.id)
})

t.test('x-request-id follows an inbound id when Fastify is told to trust it (its requestIdHeader option)', async (t) => {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, seen.headers))
  const app = Fastify({ requestIdHeader: 'x-request-id' })
  await app.register(httpServices, { defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  t.teardown(async () => { await app.close(); await server.close() })
  app.get('/', async (request) => await request.httpClient('api').getJson<Record<string, string>>('/'))
  const sent = (await app.inject({ url: '/', headers: { 'x-request-id': 'abc-123' } })).json()
  t.equal(sent['x-request-id'], 'abc-123')
})

t.test('requestIdHeader renames the header, or turns it off', async (t) => {
  const renamed = await setup(t, { requestIdHeader: 'X-Correlation-Id' })
  renamed.app.get('/', async (request) => ({ id: request.id, sent: await request.httpClient('api').getJson<Record<string, string>>('/') }))
  const body = (await renamed.app.inject({ url: '/' })).json()
  t.equal(body.sent['x-correlation-id'], body.id)
  t.notOk('x-request-id' in body.sent)
  const off = await setup(t, { requestIdHeader: false })
  off.app.get('/', async (request) => await request.httpClient('api').getJson('/'))
  const sent = (await off.app.inject({ url: '/', headers: { 'x-request-id': 'r' } })).json()
  t.notOk('x-request-id' in sent)
})

t.test('forwardHeaders copies the listed inbound headers onto calls made for that request only', async (t) => {
  const { app } = await setup(t, {}, { forwardHeaders: ['Accept-Language', 'x-tenant', 'x-absent'], headers: { 'x-static': 's' } })
  app.get('/', async (request) => ({
    api: await request.httpClient('api').getJson<Record<string, string>>('/'),
    other: await request.httpClient('other').getJson<Record<string, string>>('/')
  }))
  const got = (await app.inject({ url: '/', headers: { 'accept-language': 'fr-CH', 'x-tenant': 'acme', authorization: 'Bearer inbound' } })).json()
  t.equal(got.api['accept-language'], 'fr-CH')
  t.equal(got.api['x-tenant'], 'acme')
  t.equal(got.api['x-static'], 's')
  t.notOk('x-absent' in got.api)
  t.notOk('authorization' in got.api, 'headers not listed are never forwarded')
  t.notOk('x-tenant' in got.other, 'another service without forwardHeaders gets none')
  const call = await app.httpServices.client('api').getJson<Record<string, string>>('/')
  t.notOk('x-tenant' in call, 'the unbound client forwards nothing')
  t.notOk('x-request-id' in call)
})

t.test('a call header overrides a forwarded one', async (t) => {
  const { app } = await setup(t, {}, { forwardHeaders: ['x-tenant'] })
  app.get('/', async (request) => await request.httpClient('api').getJson('/', { headers: { 'x-tenant': 'mine', 'x-request-id': 'own' } }))
  t.match((await app.inject({ url: '/', headers: { 'x-tenant': 'theirs', 'x-request-id': 'in' } })).json(), { 'x-tenant': 'mine', 'x-request-id': 'own' })
})

t.test('the bound client logs with the request\'s reqId and the service name', async (t) => {
  const { app, lines } = await setup(t)
  app.get('/', async (request: FastifyRequest) => {
    request.httpClient('api').logger.info({ extra: 1 }, 'hello from the client')
    return { id: request.id }
  })
  const { id } = (await app.inject('/')).json()
  const line = lines.find((l) => l.msg === 'hello from the client')
  t.match(line, { reqId: id, service: 'api', extra: 1 })
})

t.test('bad options fail register with one message naming the service and the key', async (t) => {
  const app = Fastify()
  app.register(httpServices, { services: { billing: { baseUrl: 'ftp://x' } } })
  await t.rejects(async () => { await app.ready() }, { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message: /^services\.billing\.baseUrl: expected an http\(s\) URL/ })
  await app.close()
})

t.test('the plugin is registered under its package name, for fastify 5', async (t) => {
  const meta = (httpServices as unknown as Record<symbol, { name: string, fastify: string }>)[Symbol.for('plugin-meta')]
  t.match(meta, { name: 'fastify-http-services', fastify: '5.x' })
  const app = Fastify()
  await app.register(httpServices, { services: {} })
  t.ok(app.hasPlugin('fastify-http-services'))
  t.ok(app.hasRequestDecorator('httpClient'))
  await app.close()
})

import t from 'tap'
import { createHttpServices, HttpResponse } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('each verb reaches the server with its method, and the response carries status, headers and url', async (t) => {
  const server = await startServer((req, res, seen) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'x-method': 'HEAD', 'content-length': '11' })
      res.end()
      return
    }
    sendJson(res, 200, { method: seen.method, url: seen.url, body: seen.body }, { 'x-method': seen.method })
  })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')

  const calls: Array<[string, () => Promise<HttpResponse>]> = [
    ['GET', () => api.get('/a')],
    ['POST', () => api.post('/a')],
    ['PUT', () => api.put('/a')],
    ['PATCH', () => api.patch('/a')],
    ['DELETE', () => api.delete('/a')],
    ['OPTIONS', () => api.options('/a')],
    ['HEAD', () => api.head('/a')],
    ['TRACE', () => api.request('trace', '/a')]
  ]
  for (const [method, call] of calls) {
    const res = await call()
    t.ok(res instanceof HttpResponse, `${method}: an HttpResponse`)
    t.equal(res.status, 200, `${method}: status`)
    t.equal(res.ok, true, `${method}: ok`)
    t.equal(res.headers['x-method'], method, `${method}: headers`)
    t.equal(res.url, `${server.url}/a`, `${method}: url`)
    if (method === 'HEAD') {
      t.equal(await res.json(), undefined, 'HEAD: json() of a body-less response is undefined')
    } else {
      t.same(await res.json(), { method, url: '/a', body: '' }, `${method}: body`)
    }
  }
  t.same(server.requests.map((r) => r.method), calls.map(([m]) => m), 'the server saw each method once, in order')
})

t.test('request() accepts a lower-case method and refuses an unknown one without a connection', async (t) => {
  const server = await startServer((_req, res) => { res.end('ok') })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const res = await api.request('get', '/x')
  t.equal(await res.text(), 'ok')
  await t.rejects(api.request('CONNECT', '/x'), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /unsupported method "CONNECT"/ })
  await t.rejects(api.request(42 as unknown as string, '/x'), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
  t.equal(server.requests.length, 1, 'only the valid call reached the server')
})

t.test('a status >= 400 rejects with HttpStatusError by default, and resolves with throwHttpErrors: false', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 404, { error: 'no such invoice' }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  await t.rejects(api.get('/invoices/1?token=s3cret'), {
    code: 'HTTP_SERVICES_ERR_STATUS',
    status: 404,
    statusCode: 502,
    detail: 'no such invoice',
    body: { error: 'no such invoice' },
    service: 'api',
    method: 'GET',
    url: '/invoices/1?token=***'
  })
  const res = await api.get('/invoices/1', { throwHttpErrors: false })
  t.equal(res.status, 404)
  t.equal(res.ok, false)
  t.same(await res.json(), { error: 'no such invoice' })
})

t.test('throwHttpErrors: false on the service resolves error statuses, and a call may turn it back on', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 500, { message: 'boom' }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url, throwHttpErrors: false } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const res = await api.get('/')
  t.equal(res.status, 500)
  await res.dump()
  await t.rejects(api.get('/', { throwHttpErrors: true }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 500, detail: 'boom' })
})

t.test('passthroughStatus: true makes statusCode the downstream status', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 409, { title: 'Conflict', detail: 'version mismatch' },
    { 'content-type': 'application/problem+json' }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url, passthroughStatus: true } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').put('/doc'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 409, statusCode: 409, detail: 'Conflict: version mismatch' })
})

t.test('a baseUrl with a path prefixes every call path', async (t) => {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: `${server.url}/v2/` } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  t.same(await api.getJson('/users/1'), { url: '/v2/users/1' })
  t.same(await api.getJson(''), { url: '/v2' })
})

import t from 'tap'
import { ConnectionError, createHttpServices, type ServiceOptions } from '../../index'
import { closedPort, startServer, type Handler } from '../helpers/server'

async function setup (t: tap.Test, handler: Handler, options: Partial<ServiceOptions> = {}) {
  const server = await startServer(handler)
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url, ...options } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api') }
}

async function caught (promise: Promise<unknown>): Promise<ConnectionError> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as ConnectionError)
}

t.test('connection refused rejects with ConnectionError, errno ECONNREFUSED, statusCode 502', async (t) => {
  const port = await closedPort()
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: `http://127.0.0.1:${port}` } } })
  await services.open()
  t.teardown(async () => await services.close())
  const err = await caught(services.client('api').get('/users?session=abc'))
  t.ok(err instanceof ConnectionError, `a ConnectionError (got ${String(err)})`)
  t.match(err, {
    code: 'HTTP_SERVICES_ERR_CONNECTION', errno: 'ECONNREFUSED', statusCode: 502, service: 'api', method: 'GET', url: '/users?session=***'
  })
  t.equal((err.cause as { code?: string }).code, 'ECONNREFUSED', 'the cause is the system error')
  t.notMatch(err.message, /abc/)
  t.equal(services.stats().api.failures, 1)
  t.equal(services.stats().api.inFlight, 0)
})

t.test('a socket reset mid-body fails the body read with ConnectionError', async (t) => {
  const { api } = await setup(t, (req, res) => {
    res.writeHead(200, { 'content-length': '1000', 'content-type': 'application/json' })
    res.write('{"partial":')
    setTimeout(() => req.socket.resetAndDestroy(), 20)
  })
  const res = await api.get('/reset')
  t.equal(res.status, 200)
  const err = await caught(res.json())
  t.ok(err instanceof ConnectionError, `a ConnectionError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', statusCode: 502, url: '/reset' })
  t.match(err.errno, /^(ECONNRESET|UND_ERR_SOCKET)$/)
})

t.test('a chunked body cut off mid-way fails the read with ConnectionError', async (t) => {
  const { api } = await setup(t, (req, res) => {
    res.writeHead(200)
    res.write('first chunk')
    setTimeout(() => req.socket.destroy(), 20)
  })
  const res = await api.get('/cut')
  await t.rejects(res.text(), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
})

t.test('a server that closes the connection before answering rejects the call with ConnectionError', async (t) => {
  const { api, server } = await setup(t, (req) => { req.socket.destroy() })
  const err = await caught(api.post('/x', { json: { a: 1 } }))
  t.ok(err instanceof ConnectionError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', statusCode: 502, method: 'POST' })
  t.equal(server.requests.length, 1)
})

t.test('a reset before the headers rejects the call with ConnectionError ECONNRESET or UND_ERR_SOCKET', async (t) => {
  const { api } = await setup(t, (req) => { req.socket.resetAndDestroy() })
  const err = await caught(api.get('/x'))
  t.ok(err instanceof ConnectionError)
  t.match(err.errno, /^(ECONNRESET|UND_ERR_SOCKET)$/)
})

t.test('connections are kept alive and reused', async (t) => {
  const ports = new Set<number>()
  const { api } = await setup(t, (req, res) => { ports.add(req.socket.remotePort as number); res.end('ok') })
  for (let i = 0; i < 5; i++) await (await api.get('/')).text()
  t.ok(ports.size <= 2, `five sequential calls used ${ports.size} sockets`)
})

t.test('connections bounds the sockets opened to one origin', async (t) => {
  const ports = new Set<number>()
  let peak = 0
  let active = 0
  const { api } = await setup(t, (req, res) => {
    ports.add(req.socket.remotePort as number)
    active++
    peak = Math.max(peak, active)
    setTimeout(() => { active--; res.end('ok') }, 20)
  }, { connections: 2 })
  await Promise.all(Array.from({ length: 6 }, async () => await (await api.get('/')).text()))
  t.equal(ports.size, 2)
  t.equal(peak, 2)
})

import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import httpServices, { ClientClosedError } from '../../index'
import { startServer, type Handler } from '../helpers/server'

interface LogLine { level: number, msg?: string, [key: string]: unknown }

async function setup (t: tap.Test, handler: Handler, closeTimeout?: number) {
  const server = await startServer(handler)
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  await app.register(httpServices, { closeTimeout, defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await app.ready()
  t.teardown(async () => { await app.close(); await server.close() })
  return { app, server, lines, api: app.httpServices.client('api') }
}

t.test('close lets a call in flight finish, then refuses new calls with ClientClosedError', async (t) => {
  let release: () => void = () => {}
  const { app, api, server } = await setup(t, (_req, res) => { release = () => res.end('finished') })
  const inFlight = api.get('/slow')
  while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const closing = app.close()
  await new Promise((resolve) => setTimeout(resolve, 30))
  await t.rejects(api.get('/late'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', statusCode: 503 }, 'a call while closing is refused')
  t.equal(app.httpServices.stats().api.state, 'closing')
  release()
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(await res.text(), 'finished', 'the call in flight completed with its body')
  await closing
  t.equal(app.httpServices.stats().api.state, 'closed')
  const err = await api.post('/after', { json: {} }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ClientClosedError, 'a call after close rejects with ClientClosedError')
  t.match(err, { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', statusCode: 503, service: 'api', method: 'POST', message: /closed/ })
  t.same(server.requests.map((r) => r.url), ['/slow'], 'the refused calls never reached the server')
})

t.test('closeTimeout aborts a call stuck waiting for its headers, and close resolves', async (t) => {
  const { app, api, server, lines } = await setup(t, () => { /* never answers */ }, 100)
  const stuck = api.get('/stuck')
  while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await app.close()
  await t.rejects(stuck, { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', message: /closeTimeout 100 ms/ })
  const warning = lines.find((l) => l.level === 40 && /closeTimeout/.test(l.msg ?? ''))
  t.match(warning, { service: 'api', inFlight: 1, closeTimeout: 100 }, 'a warning says calls were aborted')
})

t.test('closeTimeout aborts a body that never ends', async (t) => {
  const { app, api } = await setup(t, (_req, res) => { res.writeHead(200); res.write('part') }, 100)
  const res = await api.get('/stalled')
  const reading = res.text()
  await app.close()
  await t.rejects(reading, { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
})

t.test('close with nothing in flight is quick and idempotent', async (t) => {
  const { app } = await setup(t, (_req, res) => { res.end() }, 5000)
  const registry = app.httpServices
  await app.close()
  await registry.close()
  t.equal(registry.stats().api.state, 'closed')
})

t.test('app.close() while a route waits on a downstream call: the route still answers with the downstream body', async (t) => {
  let release: () => void = () => {}
  const server = await startServer((_req, res) => { release = () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"slow":true}') } })
  const app = Fastify()
  await app.register(httpServices, { defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  app.get('/', async (req) => await req.httpClient('api').getJson('/'))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close(); await server.close() })
  const inbound = request(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`, { reset: true })
  while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const closing = app.close()
  await new Promise((resolve) => setTimeout(resolve, 30))
  release()
  const res = await inbound
  t.equal(res.statusCode, 200)
  t.same(await res.body.json(), { slow: true })
  await closing
  t.equal(app.httpServices.stats().api.state, 'closed')
})

import { getEventListeners } from 'node:events'
import t from 'tap'
import { createHttpServices, RequestAbortedError } from '../../index'
import { startServer, type Handler } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'

async function setup (t: tap.Test, handler: Handler) {
  const server = await startServer(handler)
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api') }
}

t.test('aborting the caller\'s signal mid-call rejects with RequestAbortedError whose cause is the reason', async (t) => {
  let closed: () => void = () => {}
  const socketClosed = new Promise<void>((resolve) => { closed = resolve })
  const { api, server, services } = await setup(t, (req) => { req.socket.once('close', () => closed()) })
  const controller = new AbortController()
  const call = api.get('/slow?token=x', { signal: controller.signal })
  await waitUntil('the server has the request', () => server.requests.length > 0)
  const reason = new Error('user cancelled')
  controller.abort(reason)
  const err = await call.then(() => undefined, (e: unknown) => e) as RequestAbortedError
  t.ok(err instanceof RequestAbortedError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_ABORTED', statusCode: 499, service: 'api', method: 'GET', url: '/slow?token=***' })
  t.equal(err.cause, reason)
  await within('the downstream sees its socket close', socketClosed)
  t.pass('the downstream saw its socket close')
  t.equal(services.stats().api.inFlight, 0)
})

t.test('an already aborted signal rejects at once, without a connection', async (t) => {
  let connections = 0
  const { api, server } = await setup(t, (_req, res) => { res.end() })
  server.server.on('connection', () => { connections++ })
  await t.rejects(api.get('/', { signal: AbortSignal.abort(new Error('too late')) }), { code: 'HTTP_SERVICES_ERR_ABORTED', cause: { message: 'too late' } })
  t.equal(connections, 0)
})

t.test('aborting while the body is read fails the read', async (t) => {
  const { api } = await setup(t, (_req, res) => { res.writeHead(200); res.write('part') })
  const controller = new AbortController()
  const res = await api.get('/', { signal: controller.signal })
  const reading = res.text()
  controller.abort()
  await t.rejects(reading, { code: 'HTTP_SERVICES_ERR_ABORTED' })
})

t.test('a long-lived signal shared by many calls keeps no listener once they are done', async (t) => {
  const { api } = await setup(t, (_req, res) => { res.end('ok') })
  const controller = new AbortController()
  for (let i = 0; i < 20; i++) await (await api.get('/', { signal: controller.signal })).text()
  const failing = await api.get('/', { signal: controller.signal, headers: { 'x-a': 'bad\n' } }).catch(() => undefined)
  t.equal(failing, undefined)
  await new Promise((resolve) => setImmediate(resolve)) // a body emits 'close' just after its end
  t.equal(getEventListeners(controller.signal, 'abort').length, 0, 'no abort listener left on the caller\'s signal')
})

t.test('signal must be an AbortSignal', async (t) => {
  const { api } = await setup(t, (_req, res) => { res.end() })
  await t.rejects(api.get('/', { signal: {} as AbortSignal }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /signal must be an AbortSignal/ })
})

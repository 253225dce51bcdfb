import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createHttpServices, TimeoutError, type ServiceOptions } from '../../index'
import { startServer, type Handler } from '../helpers/server'

async function client (t: tap.Test, baseUrl: string, options: Partial<ServiceOptions> = {}) {
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl, ...options } } })
  await services.open()
  t.teardown(async () => await services.close())
  return { services, api: services.client('api') }
}

async function server (t: tap.Test, handler: Handler) {
  const s = await startServer(handler)
  t.teardown(async () => await s.close())
  return s
}

async function caught (promise: Promise<unknown>): Promise<TimeoutError> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as TimeoutError)
}

/** A plain TCP server that accepts connections and never says a word: a TLS handshake to it never completes. */
async function silentTcp (t: tap.Test): Promise<{ port: number, accepted: () => number }> {
  const sockets = new Set<Socket>()
  let accepted = 0
  const s = createServer((socket) => {
    accepted++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  })
  return { port: (s.address() as AddressInfo).port, accepted: () => accepted }
}

t.test('connect: a TLS handshake that never completes fails with TimeoutError phase connect (504)', async (t) => {
  const tcp = await silentTcp(t)
  const { api } = await client(t, `https://127.0.0.1:${tcp.port}`, { timeout: { connect: 150 } })
  const err = await caught(api.get('/x?key=1'))
  t.ok(err instanceof TimeoutError, `a TimeoutError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'connect', timeout: 150, statusCode: 504, service: 'api', method: 'GET', url: '/x?key=***' })
  t.match(err.message, /connect timeout after 150 ms/)
  t.equal(tcp.accepted(), 1, 'the TCP connection itself was accepted')
})

t.test('headers: a server that never sends its headers fails with TimeoutError phase headers', async (t) => {
  const s = await server(t, () => { /* never answers */ })
  const { api } = await client(t, s.url, { timeout: { headers: 150 } })
  const err = await caught(api.get('/slow'))
  t.ok(err instanceof TimeoutError)
  t.match(err, { phase: 'headers', timeout: 150, statusCode: 504, url: '/slow' })
  t.equal(s.requests.length, 1, 'the request was sent')
})

t.test('headers: a per-call timeout.headers overrides the service and is the limit reported', async (t) => {
  const s = await server(t, () => { /* never answers */ })
  const { api } = await client(t, s.url)
  const err = await caught(api.get('/slow', { timeout: { headers: 120 } }))
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'headers', timeout: 120 })
  t.match(err.message, /headers timeout after 120 ms/)
})

t.test('body: a server that stalls mid-body fails the read with TimeoutError phase body', async (t) => {
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"items":[1,2,')
  })
  const { api } = await client(t, s.url, { timeout: { body: 150 } })
  const res = await api.get('/stall')
  t.equal(res.status, 200, 'the headers arrived in time')
  const err = await caught(res.json())
  t.ok(err instanceof TimeoutError)
  t.match(err, { phase: 'body', timeout: 150, statusCode: 504, url: '/stall' })
  await t.rejects(api.getJson('/stall'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'body' }, 'the *Json helpers too')
})

t.test('body: a per-call timeout.body overrides the service', async (t) => {
  const s = await server(t, (_req, res) => { res.writeHead(200); res.write('x') })
  const { api } = await client(t, s.url)
  const res = await api.get('/stall', { timeout: { body: 120 } })
  const err = await caught(res.text())
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'body', timeout: 120 })
})

t.test('total: a per-call timeout: 300 bounds a call whose headers never come', async (t) => {
  const s = await server(t, () => { /* never answers */ })
  const { api } = await client(t, s.url)
  const err = await caught(api.get('/slow', { timeout: 300 }))
  t.ok(err instanceof TimeoutError)
  t.match(err, { phase: 'total', timeout: 300, statusCode: 504, service: 'api', method: 'GET', url: '/slow' })
  t.match(err.message, /total timeout after 300 ms/)
})

t.test('total: the timer keeps guarding the body after the headers arrived', async (t) => {
  const s = await server(t, (_req, res) => { res.writeHead(200); res.write('partial') })
  const { api } = await client(t, s.url)
  const res = await api.get('/trickle', { timeout: 300 })
  const err = await caught(res.text())
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total', timeout: 300 })
})

t.test('total: a service timeout given as a number is the total timeout of every call', async (t) => {
  const s = await server(t, () => { /* never answers */ })
  const { api } = await client(t, s.url, { timeout: 200 })
  await t.rejects(api.get('/slow'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total', timeout: 200 })
})

t.test('a call that ends in time is not affected by its total timeout, nor by later timer ticks', async (t) => {
  const s = await server(t, (_req, res) => { res.end('fast') })
  const { api, services } = await client(t, s.url, { timeout: 200 })
  t.equal(await (await api.get('/')).text(), 'fast')
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal(await (await api.get('/')).text(), 'fast')
  t.equal(services.stats().api.failures, 0)
})

t.test('the default timeouts are finite and far below undici\'s 300 s', async (t) => {
  const { services } = await client(t, 'http://127.0.0.1:1')
  const timeout = services.get('api').options.timeout
  t.same(timeout, { connect: 5000, headers: 30000, body: 30000, total: 0 })
})

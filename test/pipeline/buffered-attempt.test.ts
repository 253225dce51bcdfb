import { AsyncLocalStorage } from 'node:async_hooks'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { Dispatcher } from 'undici'
import { createHttpServices, type HttpServicesOptions } from '../../index'
import { sendJson, startServer, type Handler, type TestServer } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'

// The *Json helpers read a 2xx body in their own dispatch handler (lib/pipeline/buffered-attempt.ts); other answers
// get a bridge stream. These tests pin what that handler must do that undici's request() did for it.

async function open (t: Test, handler: Handler, service: Record<string, unknown> = {}): Promise<{
  server: TestServer, services: ReturnType<typeof createHttpServices>
}> {
  const server = await startServer(handler)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, ...service } } } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services }
}

const tick = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('a call aborted while it waits for a connection settles at once, is never sent, and its request keeps a bulkhead slot until undici lets go of it', async (t) => {
  const held: ServerResponse[] = []
  const { server, services } = await open(t, (req, res) => {
    if (req.url === '/hold') held.push(res)
    else sendJson(res, 200, { url: req.url })
  }, { connections: 1, bulkhead: { maxConcurrent: 2 } })
  const api = services.client('api')
  const first = api.getJson('/hold')
  await waitUntil('the server holds the first request', () => held.length > 0, undefined, 2)
  const controller = new AbortController()
  const queued = api.getJson('/queued', { signal: controller.signal })
  await tick(10)
  controller.abort(new Error('gave up'))
  await t.rejects(within('the aborted call settles', queued, 1000), { code: 'HTTP_SERVICES_ERR_ABORTED', url: '/queued', cause: { message: 'gave up' } })
  // undici keeps a queued request until a connection is free: so does the bulkhead (it bounds what undici holds).
  t.match(services.stats().api.bulkhead, { active: 1, abandoned: 1 })
  await t.rejects(api.getJson('/third'), { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' })
  sendJson(held[0], 200, { url: '/hold' })
  t.same(await first, { url: '/hold' })
  t.same(await api.getJson('/after'), { url: '/after' })
  t.same(server.requests.map((r) => r.url), ['/hold', '/after'], 'the aborted call never reached the server')
  t.match(services.stats().api, { inFlight: 0, bulkhead: { active: 0, abandoned: 0 } })
})

t.test('a dispatcher that throws instead of reporting through the handler gives a typed error of the call', async (t) => {
  class Refusing extends Dispatcher {
    override dispatch (): boolean {
      throw Object.assign(new Error('refused by interceptor'), { code: 'ERR_REFUSED' })
    }
  }
  const services = createHttpServices({ dispatcher: new Refusing(), services: { api: { baseUrl: 'http://127.0.0.1:1', retry: false } } })
  await services.open()
  t.teardown(async () => { await services.close() })
  for (const call of [async () => await services.client('api').getJson('/x'), async () => await services.client('api').get('/x')]) {
    const err = await call().then(() => undefined, (e: unknown) => e) as { code?: string, service?: string, cause?: { message?: string } }
    t.match(err, { code: /^HTTP_SERVICES_ERR_/, service: 'api', method: 'GET', url: '/x' })
  }
  t.equal(services.stats().api.inFlight, 0)
})

t.test('a body in many chunks, with a character split across two of them and a byte order mark, parses whole', async (t) => {
  const text = '\ufeff' + JSON.stringify({ name: 'Zoë', city: '東京', items: Array.from({ length: 500 }, (_, i) => i) })
  const bytes = Buffer.from(text, 'utf8')
  const { services } = await open(t, async (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    // 7-byte pieces cut through the 2- and 3-byte characters.
    for (let i = 0; i < bytes.length; i += 7) {
      res.write(bytes.subarray(i, i + 7))
      if (i % 700 === 0) await tick(1)
    }
    res.end()
  })
  const body = await services.client('api').getJson<{ name: string, city: string, items: number[] }>('/')
  t.equal(body.name, 'Zoë')
  t.equal(body.city, '東京')
  t.equal(body.items.length, 500)
})

t.test('a large error page is read only for its detail; the connection is closed and the service keeps working', async (t) => {
  let closedSockets = 0
  const page = '<html>' + 'x'.repeat(1024 * 1024) + '</html>'
  const { server, services } = await open(t, (req, res) => {
    if (req.url === '/broken') {
      res.socket?.once('close', () => { closedSockets++ })
      res.writeHead(500, { 'content-type': 'text/html' })
      res.end(page)
      return
    }
    sendJson(res, 200, { ok: true })
  })
  const api = services.client('api')
  await t.rejects(api.getJson('/broken'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 500 })
  await waitUntil('the server sees the error page\'s connection close', () => closedSockets > 0)
  t.equal(closedSockets, 1, 'the half-read error body closed its connection')
  t.same(await api.getJson('/ok'), { ok: true })
  t.equal(server.requests.length, 2)
})

t.test('the caller\'s signal aborting mid-body fails the call and closes the connection', async (t) => {
  let closed = false
  const { services } = await open(t, (req, res) => {
    req.socket.once('close', () => { closed = true })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"partial":')
  })
  const controller = new AbortController()
  const call = services.client('api').getJson('/', { signal: controller.signal })
  await tick(30)
  controller.abort()
  await t.rejects(call, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  await waitUntil('the downstream sees its socket close', () => closed)
  t.ok(closed, 'the downstream saw its socket close')
})

t.test('an attempt timeout that fires mid-body fails the call with a TimeoutError and ends it', async (t) => {
  const { services } = await open(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"partial":')
  }, { timeout: { attempt: 50 } })
  await t.rejects(services.client('api').getJson('/'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt' })
  t.equal(services.stats().api.inFlight, 0)
})

t.test('a 2xx chunked body over maxResponseSize fails once past the limit, and the next call gets a connection', async (t) => {
  const { services } = await open(t, (req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('[' + '1,'.repeat(600))
      res.end('1]')
      return
    }
    sendJson(res, 200, { ok: true })
  }, { maxResponseSize: 1000 })
  const api = services.client('api')
  await t.rejects(api.getJson('/big'), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', limit: 1000 })
  t.same(await api.getJson('/ok'), { ok: true })
})

t.test('the caller\'s async context is the one after the call settles', async (t) => {
  const { services } = await open(t, (_req, res) => { setTimeout(() => sendJson(res, 200, { ok: true }), 5) })
  const store = new AsyncLocalStorage<string>()
  const api = services.client('api')
  const seen = await Promise.all(['a', 'b', 'c'].map(async (id) => await store.run(id, async () => {
    await api.getJson('/')
    return store.getStore()
  })))
  t.same(seen, ['a', 'b', 'c'])
})

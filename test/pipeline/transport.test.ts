import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { createHttpServices, type HttpServicesOptions } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'

/** Sends the headers and the first bytes of a JSON body, then resets the connection. */
function breakOff (res: ServerResponse, chunked: boolean): void {
  const text = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => i) })
  res.writeHead(200, { 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': String(text.length) }) })
  res.write(text.slice(0, 40))
  // Let the headers and the first bytes reach the client before the connection goes.
  setTimeout(() => res.socket?.destroy(), 20)
}

/** A server whose first `failures` answers break off half-way through the body. */
async function flaky (failures: number, chunked = false): Promise<TestServer> {
  let n = 0
  return await startServer((_req, res) => {
    n++
    if (n <= failures) breakOff(res, chunked)
    else sendJson(res, 200, { ok: true, n })
  })
}

async function open (t: Test, server: TestServer, service: Record<string, unknown>): Promise<ReturnType<typeof createHttpServices>> {
  const services = createHttpServices({ services: { api: { baseUrl: server.url, ...service } } } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return services
}

t.test('getJson: a body that breaks off after the headers is retried, with or without content-length', async (t) => {
  for (const chunked of [false, true]) {
    const server = await flaky(1, chunked)
    const services = await open(t, server, { retry: { baseDelay: 1 } })
    t.same(await services.client('api').getJson('/items'), { ok: true, n: 2 }, chunked ? 'chunked' : 'content-length')
    t.equal(server.requests.length, 2, 'the server saw the first try and the retry')
  }
})

t.test('postJson: a body that breaks off is not retried (the POST was handled)', async (t) => {
  const server = await flaky(1)
  const services = await open(t, server, { retry: { baseDelay: 1 } })
  await t.rejects(services.client('api').postJson('/items', { a: 1 }), {
    code: 'HTTP_SERVICES_ERR_CONNECTION', service: 'api', method: 'POST', attempts: 1
  })
  t.equal(server.requests.length, 1)
})

t.test('a body that keeps breaking off gives up after the retries with the connection error', async (t) => {
  const server = await flaky(10)
  const services = await open(t, server, { retry: { attempts: 2, baseDelay: 1 } })
  await t.rejects(services.client('api').getJson('/items'), { code: 'HTTP_SERVICES_ERR_CONNECTION', attempts: 3 })
  t.equal(server.requests.length, 3)
})

t.test('get() hands the body over unread: a break after that is the caller\'s, and is not retried', async (t) => {
  const server = await flaky(1)
  const services = await open(t, server, { retry: { baseDelay: 1 } })
  const res = await services.client('api').get('/items')
  t.equal(res.status, 200)
  await t.rejects(res.json(), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  t.equal(server.requests.length, 1)
})

t.test('the breaker counts bodies that break off', async (t) => {
  const server = await flaky(10)
  const services = await open(t, server, {
    retry: false,
    breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 10_000 }
  })
  const api = services.client('api')
  for (let i = 0; i < 2; i++) await t.rejects(api.getJson('/items'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  await t.rejects(api.getJson('/items'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  t.equal(server.requests.length, 2, 'the open breaker kept the third call off the server')
})

t.test('an attempt timeout covers the body of a *Json call: a stalled body is retried', async (t) => {
  let n = 0
  const server = await startServer((_req, res) => {
    n++
    if (n === 1) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' })
      res.write('{"stalled":')
      return // never finishes: the attempt timeout must end it
    }
    sendJson(res, 200, { ok: true })
  })
  const services = await open(t, server, { timeout: { attempt: 200 }, retry: { baseDelay: 1 } })
  const started = performance.now()
  t.same(await services.client('api').getJson('/slow'), { ok: true })
  t.ok(performance.now() - started < 5000, 'ended by the attempt timeout, not the 30 s body timeout')
  t.equal(server.requests.length, 2)
})

t.test('a too-large body of a *Json call fails once, without retries', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, { blob: 'x'.repeat(2000) }))
  const services = await open(t, server, { maxResponseSize: 1000, retry: { baseDelay: 1 } })
  await t.rejects(services.client('api').getJson('/big'), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE' })
  t.equal(server.requests.length, 1)
})

t.test('a buffered error status still reaches the caller as an HttpStatusError with its detail', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 404, { message: 'no such item' }))
  const services = await open(t, server, {})
  await t.rejects(services.client('api').getJson('/missing'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 404, detail: 'no such item' })
})

t.test('*Json helpers: empty, 204 and HEAD-like answers parse to undefined; the body of a buffered call reads once', async (t) => {
  const server = await startServer((req, res) => {
    if (req.url === '/empty') {
      res.writeHead(200, { 'content-length': '0' })
      res.end()
    } else if (req.url === '/none') {
      res.writeHead(204)
      res.end()
    } else {
      sendJson(res, 200, { a: 1 })
    }
  })
  const services = await open(t, server, {})
  const api = services.client('api')
  t.equal(await api.getJson('/empty'), undefined)
  t.equal(await api.deleteJson('/none'), undefined)
  t.same(await api.putJson('/x', { b: 2 }), { a: 1 })
  t.same(await api.patchJson('/x', { b: 2 }), { a: 1 })
})

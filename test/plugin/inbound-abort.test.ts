import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import { request as undiciRequest } from 'undici'
import httpServices from '../../index'
import { startServer } from '../helpers/server'
import { within } from '../helpers/wait'

interface LogLine { level: number, msg?: string, err?: { type?: string, code?: string } }

/**
 * A downstream that never answers and reports when its socket closes; an app on a real port whose route calls it;
 * and a way to watch the app's log.
 */
async function setup (t: tap.Test) {
  let downstreamClosed: () => void = () => {}
  const closed = new Promise<void>((resolve) => { downstreamClosed = resolve })
  let received: () => void = () => {}
  const reached = new Promise<void>((resolve) => { received = resolve })
  const downstream = await startServer((req) => {
    req.socket.once('close', () => downstreamClosed())
    received()
  })
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  await app.register(httpServices, { defaults: { retry: false }, services: { slow: { baseUrl: downstream.url } } })
  let outcome: unknown
  let settled: () => void = () => {}
  const done = new Promise<void>((resolve) => { settled = resolve })
  const handler = async (request: import('fastify').FastifyRequest): Promise<unknown> => {
    try {
      return await request.httpClient('slow').getJson('/wait')
    } catch (err) {
      outcome = err
      throw err
    } finally {
      settled()
    }
  }
  app.get('/proxy', handler)
  app.post('/proxy', handler)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close(); await downstream.close() })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/proxy`
  return { app, url, downstream, closed, reached, done, lines, outcome: () => outcome }
}

for (const method of ['GET', 'POST'] as const) {
  t.test(`a client that disconnects from a ${method} route aborts the downstream call, which is not logged as a failure`, async (t) => {
    const s = await setup(t)
    const controller = new AbortController()
    const inbound = undiciRequest(s.url, {
      method,
      signal: controller.signal,
      ...(method === 'POST' ? { body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } } : {})
    })
    inbound.catch(() => {})
    await within('the downstream has the call', s.reached)
    controller.abort()
    await within('the downstream sees its socket close', s.closed)
    t.pass('the downstream server saw its socket close')
    await within('the route handler settles', s.done)
    t.match(s.outcome(), { code: 'HTTP_SERVICES_ERR_ABORTED', statusCode: 499 }, 'the downstream call failed with RequestAbortedError')
    t.equal(s.downstream.requests.length, 1)
    t.equal(s.app.httpServices.stats().slow.inFlight, 0)
    await new Promise((resolve) => setImmediate(resolve))
    const errors = s.lines.filter((l) => l.level >= 50)
    t.same(errors, [], 'nothing was logged at error level')
  })
}

t.test('a request whose response completed does not abort later calls of other requests', async (t) => {
  const downstream = await startServer((_req, res) => { setTimeout(() => res.end('{"ok":true}'), 30) })
  const app = Fastify()
  await app.register(httpServices, { defaults: { retry: false }, services: { api: { baseUrl: downstream.url } } })
  app.get('/x', async (request) => await request.httpClient('api').getJson('/'))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close(); await downstream.close() })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/x`
  for (let i = 0; i < 3; i++) {
    const res = await undiciRequest(url)
    t.equal(res.statusCode, 200)
    t.same(await res.body.json(), { ok: true })
  }
})

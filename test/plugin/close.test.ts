import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import httpServices, { ClientClosedError, type ServiceOptions } from '../../index'
import { startServer, type Handler } from '../helpers/server'

interface LogLine { level: number, msg?: string, [key: string]: unknown }

const tick = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 5))
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
/** Retries once, 300 ms after a 503. */
const slowRetry: Partial<ServiceOptions> = { retry: { attempts: 1, baseDelay: 300, jitter: 'none' } }
/** 503 to the first request, then 200 with the request's number. */
function failOnce (): Handler {
  let n = 0
  return (_req, res) => { n++; res.statusCode = n === 1 ? 503 : 200; res.end(String(n)) }
}

async function setup (t: tap.Test, handler: Handler, closeTimeout?: number, api: Partial<ServiceOptions> = {}) {
  const server = await startServer(handler)
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  await app.register(httpServices, { closeTimeout, defaults: { retry: false }, services: { api: { baseUrl: server.url, ...api } } })
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
  t.equal(app.httpServices.stats().api.lifecycle, 'closing')
  release()
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(await res.text(), 'finished', 'the call in flight completed with its body')
  await closing
  t.equal(app.httpServices.stats().api.lifecycle, 'closed')
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
  t.equal(registry.stats().api.lifecycle, 'closed')
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
  t.equal(app.httpServices.stats().api.lifecycle, 'closed')
})

t.test('close waits for a call sleeping before its retry: the retry is sent and the call succeeds', async (t) => {
  const { app, api, server, lines } = await setup(t, failOnce(), 2000, slowRetry)
  const call = api.get('/x')
  while (!lines.some((l) => /retrying GET/.test(l.msg ?? ''))) await tick()
  const closing = app.close()
  const res = await call
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(await res.text(), '2', 'the retry reached the server')
  await closing
  t.equal(app.httpServices.stats().api.lifecycle, 'closed')
  t.equal(server.requests.length, 2)
})

t.test('closeTimeout ends a call sleeping before its retry at once with ClientClosedError, leaving no timer', async (t) => {
  const { app, api, server, lines } = await setup(t, failOnce(), 100, slowRetry)
  const before = timers()
  const call = api.get('/x').then(() => undefined, (err: unknown) => ({ err, at: performance.now() }))
  while (!lines.some((l) => /retrying GET/.test(l.msg ?? ''))) await tick()
  const sleeping = performance.now()
  await app.close()
  t.ok(timers() <= before, 'its sleep timer was cleared when close returned')
  const outcome = await call
  t.ok(outcome !== undefined && outcome.err instanceof ClientClosedError, 'the call rejects with ClientClosedError')
  t.match(outcome?.err, { service: 'api', method: 'GET', url: '/x', message: /closed while the call waited/ })
  const waited = (outcome?.at ?? Infinity) - sleeping
  t.ok(waited < 250, `it ended with the closeTimeout, not the 300 ms wake-up (${Math.round(waited)} ms)`)
  t.equal(server.requests.length, 1, 'no retry was sent')
})

t.test('close lets a call queued in the bulkhead have its turn', async (t) => {
  let release: () => void = () => {}
  let n = 0
  const { app, api, server } = await setup(t, (_req, res) => {
    n++
    if (n === 1) release = () => res.end('first')
    else res.end('second')
  }, 2000, { bulkhead: { maxConcurrent: 1, maxQueue: 1 } })
  const first = api.get('/1')
  while (server.requests.length === 0) await tick()
  const queued = api.get('/2')
  await tick()
  t.match(app.httpServices.stats().api.bulkhead, { active: 1, queued: 1 })
  const closing = app.close()
  await tick()
  release()
  t.equal(await (await first).text(), 'first')
  t.equal(await (await queued).text(), 'second', 'the queued call was sent once the slot was free')
  await closing
  t.same(server.requests.map((r) => r.url), ['/1', '/2'])
})

t.test('closeTimeout ends a call queued in the bulkhead at once with ClientClosedError, leaving no timer', async (t) => {
  const retry = { attempts: 1, baseDelay: 600, jitter: 'none' as const }
  const { app, api, server, lines } = await setup(t, failOnce(), 100, { retry, bulkhead: { maxConcurrent: 1, maxQueue: 1 } })
  const before = timers()
  const outcome = async (p: Promise<unknown>) => await p.then(() => undefined, (err: unknown) => ({ err, at: performance.now() }))
  // The first call holds the slot while it sleeps before its retry; the second waits for the slot.
  const first = outcome(api.get('/1'))
  while (!lines.some((l) => /retrying GET/.test(l.msg ?? ''))) await tick()
  const queued = outcome(api.get('/2'))
  await tick()
  t.match(app.httpServices.stats().api.bulkhead, { active: 1, queued: 1 })
  const closed = performance.now()
  await app.close()
  t.ok(timers() <= before, 'no sleep or queue timer is left when close returned')
  for (const o of [await first, await queued]) {
    t.ok(o !== undefined && o.err instanceof ClientClosedError, 'the call rejects with ClientClosedError')
    const waited = (o?.at ?? Infinity) - closed
    t.ok(waited < 300, `at the closeTimeout, not when the slot would free (${Math.round(waited)} ms)`)
  }
  t.match((await queued)?.err, { url: '/2', message: /closed while the call waited/ })
  t.equal(server.requests.length, 1)
})

t.test('closeTimeout ends a call waiting for a rate-limit permit', async (t) => {
  const { app, api, server } = await setup(t, (_req, res) => { res.end('ok') }, 100, { rateLimit: { rate: 1, interval: 2000, maxWait: 2000 } })
  await (await api.get('/1')).dump()
  const before = timers()
  const waiting = api.get('/2').then(() => undefined, (err: unknown) => err)
  await tick()
  t.match(app.httpServices.stats().api.rateLimit, { waited: 1 })
  await app.close()
  t.ok(timers() <= before, 'its wait timer was cleared when close returned')
  t.ok(await waiting instanceof ClientClosedError, 'the waiting call rejects with ClientClosedError')
  t.equal(server.requests.length, 1)
})

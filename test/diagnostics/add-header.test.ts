import diagnosticsChannel from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { createHttpServices, type ServiceOptions } from '../../index'
import { attemptStart } from '../../lib/diagnostics/channels'
import type { AttemptMessage } from '../../lib/diagnostics/messages'
import { sendJson, startServer, type Handler } from '../helpers/server'

/** What a tracer does: a `traceparent` per request, its span id naming the attempt. */
function traceparent (attempt: number): string {
  return `00-${'a'.repeat(32)}-${attempt.toString(16).padStart(16, '0')}-01`
}

function subscribe (t: Test, name: string, onMessage: (message: AttemptMessage) => void): void {
  const fn = onMessage as (message: unknown) => void
  diagnosticsChannel.subscribe(name, fn)
  t.teardown(() => { diagnosticsChannel.unsubscribe(name, fn) })
}

const injectTraceparent = (m: AttemptMessage): void => { m.addHeader('Traceparent', traceparent(m.attempt)) }

async function setup (t: Test, handler: Handler, service: Partial<ServiceOptions>) {
  const server = await startServer(handler)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, headers: { 'x-service': 'api' }, ...service } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api') }
}

t.test('a header added on attempt:start reaches the server on every retry, each with its own value', async (t) => {
  let n = 0
  const { server, api } = await setup(t, (_req, res) => sendJson(res, ++n < 3 ? 503 : 200, { n }), { retry: { attempts: 3, delay: () => 1 } })
  subscribe(t, attemptStart.name as string, injectTraceparent)
  t.same(await api.getJson('/x'), { n: 3 })
  t.same(server.requests.map((r) => r.headers.traceparent), [traceparent(1), traceparent(2), traceparent(3)])
  t.same(server.requests.map((r) => r.headers['x-service']), ['api', 'api', 'api'], 'the service\'s headers go too')
})

t.test('each hedge gets the header of its own attempt', async (t) => {
  let n = 0
  const { server, api } = await setup(t, (_req, res) => {
    const delay = ++n === 1 ? 300 : 0
    setTimeout(() => sendJson(res, 200, { n }), delay)
  }, { retry: false, hedge: { delay: 30, maxHedges: 1 } })
  subscribe(t, attemptStart.name as string, injectTraceparent)
  t.same(await api.getJson('/x'), { n: 2 }, 'the hedge answered first')
  t.same(server.requests.map((r) => r.headers.traceparent).sort(), [traceparent(1), traceparent(2)])
})

t.test('the header goes with that request only: the call\'s and the service\'s headers are not changed', async (t) => {
  const { server, api } = await setup(t, (_req, res) => sendJson(res, 200, {}), { retry: false })
  const seen: Array<string | undefined> = []
  const onStart = (m: unknown): void => { (m as AttemptMessage).addHeader('x-trace', 'on') }
  diagnosticsChannel.subscribe(attemptStart.name as string, onStart)
  await api.getJson('/a')
  diagnosticsChannel.unsubscribe(attemptStart.name as string, onStart)
  await api.getJson('/b')
  for (const r of server.requests) seen.push(r.headers['x-trace'] as string | undefined)
  t.same(seen, ['on', undefined])
})

t.test('addHeader refuses a bad header, the framing and routing headers, and any header once the request is sent, without throwing', async (t) => {
  const { api, server } = await setup(t, (_req, res) => sendJson(res, 200, {}), { retry: false })
  const results: Array<[string, boolean]> = []
  subscribe(t, attemptStart.name as string, (m) => {
    results.push(['crlf', m.addHeader('x-bad', 'a\r\nSet-Cookie: x=1')])
    results.push(['name', m.addHeader('bad name', '1')])
    for (const name of ['Host', 'content-length', 'transfer-encoding', 'connection']) results.push([name, m.addHeader(name, 'evil.example')])
    results.push(['ok', m.addHeader('x-ok', '1')])
  })
  subscribe(t, 'fastify-http-services:attempt:end', (m) => {
    results.push(['late', m.addHeader('x-late', '1')])
  })
  await api.getJson('/x')
  t.same(results, [['crlf', false], ['name', false], ['Host', false], ['content-length', false], ['transfer-encoding', false], ['connection', false], ['ok', true], ['late', false]])
  const sent = server.requests[0].headers
  t.equal(sent['x-ok'], '1')
  t.equal(sent['x-bad'], undefined)
  t.notOk(String(sent.host).includes('evil'), 'the Host header is the upstream\'s')
})

import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import t, { type Test } from 'tap'
import { createHttpServices, type ServiceOptions } from '../../index'
import { attemptStart } from '../../lib/diagnostics/channels'
import { sendJson, startServer, type Handler } from '../helpers/server'
import { setupOtel, type Otel } from '../helpers/otel'

async function setup (t: Test, handler: Handler, service: Partial<ServiceOptions> = {}, telemetry?: false) {
  const otel = setupOtel(t)
  const server = await startServer(handler)
  const { tracerProvider, meterProvider, propagator } = otel
  const services = createHttpServices({
    services: { users: { baseUrl: server.url, ...service } },
    telemetry: telemetry ?? { tracerProvider, meterProvider, propagator }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { otel, server, services, users: services.client('users') }
}

const parentId = (s: { parentSpanContext?: { spanId: string } }): string | undefined => s.parentSpanContext?.spanId

t.test('a 503, 503, 200 sequence makes three CLIENT spans under the caller\'s span, numbered by resend_count', async (t) => {
  let n = 0
  const { otel, server, users } = await setup(t, (_req, res) => sendJson(res, ++n < 3 ? 503 : 200, { n }), { retry: { attempts: 3, delay: () => 1 } })
  const parent = await otel.inSpan('GET /orders', async (span) => {
    t.same(await users.getJson('/users/:id', { params: { id: 42 } }), { n: 3 })
    return span.spanContext()
  })
  const spans = otel.spans()
  t.equal(spans.length, 3)
  t.same(spans.map((s) => s.attributes['http.request.resend_count']), [undefined, 1, 2])
  t.same(spans.map((s) => s.attributes['http.response.status_code']), [503, 503, 200])
  t.same(spans.map((s) => s.status.code), [SpanStatusCode.ERROR, SpanStatusCode.ERROR, SpanStatusCode.UNSET])
  t.same(spans.map((s) => s.attributes['error.type']), ['503', '503', undefined])
  for (const s of spans) {
    t.equal(s.kind, SpanKind.CLIENT)
    t.equal(s.name, 'GET /users/:id', 'named by the template, never the raw path')
    t.equal(s.spanContext().traceId, parent.traceId)
    t.equal(parentId(s), parent.spanId, 'a child of the span active when the call was made')
  }
  t.same(server.requests.map((r) => r.headers.traceparent),
    spans.map((s) => `00-${parent.traceId}-${s.spanContext().spanId}-01`),
    'each request carries the traceparent of its own span')
})

t.test('a span has the stable HTTP client attributes and the service', async (t) => {
  const { otel, server, users } = await setup(t, (_req, res) => sendJson(res, 200, {}))
  await users.getJson('/users/:id', { params: { id: 7 }, query: { token: 'secret', page: 2 } })
  const [span] = otel.spans()
  t.same(span.attributes, {
    'http.request.method': 'GET',
    'http_services.service': 'users',
    'url.template': '/users/:id',
    'network.protocol.version': '1.1',
    'server.address': '127.0.0.1',
    'server.port': server.port,
    'url.full': `${server.url}/users/7?token=***&page=***`,
    'http.response.status_code': 200
  })
  t.equal(server.requests[0].url, '/users/7?token=secret&page=2', 'the request itself is not redacted')
})

t.test('two registries in one process: each span goes to its own registry\'s provider, and the channels are let go with the last', async (t) => {
  const { otel, users } = await setup(t, (_req, res) => sendJson(res, 200, {}))
  const other = setupOtel(t)
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const { tracerProvider, propagator } = other
  const services = createHttpServices({ services: { orders: { baseUrl: server.url } }, telemetry: { tracerProvider, propagator } })
  await services.open()
  t.teardown(async () => { await server.close() })
  await users.getJson('/a')
  await services.client('orders').getJson('/b')
  t.same(otel.spans().map((s) => s.attributes['http_services.service']), ['users'])
  t.same(other.spans().map((s) => s.attributes['http_services.service']), ['orders'])
  t.ok(attemptStart.hasSubscribers)
  await services.close()
  t.ok(attemptStart.hasSubscribers, 'the first registry is still open')
})

t.test('a call made outside any span starts a trace of its own', async (t) => {
  const { otel, server, users } = await setup(t, (_req, res) => sendJson(res, 204, {}))
  await (await users.post('/users', { json: { a: 1 } })).dump()
  const [span] = otel.spans()
  t.equal(span.name, 'POST')
  t.equal(parentId(span), undefined)
  t.equal(span.attributes['url.template'], undefined)
  t.match(server.requests[0].headers.traceparent, new RegExp(`^00-${span.spanContext().traceId}-`))
})

t.test('a failed request has error.type from its error code and an error status', async (t) => {
  const otel = setupOtel(t)
  const dead = await startServer(() => {})
  const url = dead.url
  await dead.close()
  const { tracerProvider, propagator } = otel
  const services = createHttpServices({ services: { gone: { baseUrl: url, retry: false, breaker: false } }, telemetry: { tracerProvider, propagator } })
  await services.open()
  t.teardown(async () => { await services.close() })
  await t.rejects(services.client('gone').getJson('/x'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  const [span] = otel.spans()
  t.equal(span.attributes['error.type'], 'ECONNREFUSED')
  t.equal(span.status.code, SpanStatusCode.ERROR)
  t.equal(span.attributes['http.response.status_code'], undefined)
  t.equal(span.events[0]?.name, 'exception', 'the exception is recorded')
})

t.test('a call the bulkhead refuses leaves an event on the active span and no CLIENT span', async (t) => {
  let release: () => void = () => {}
  const arrived = new Promise<void>((resolve) => { release = resolve })
  let answer: () => void = () => {}
  const { otel, users } = await setup(t, (_req, res) => { answer = () => sendJson(res, 200, {}); release() },
    { retry: false, bulkhead: { maxConcurrent: 1, maxQueue: 0 } })
  const first = users.getJson('/slow')
  await arrived
  await otel.inSpan('GET /orders', async () => {
    await t.rejects(users.getJson('/refused'), { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' })
  })
  answer()
  await first
  const request = otel.spans(true).find((s) => s.name === 'GET /orders')
  t.equal(request?.events.length, 1)
  const event = request?.events[0]
  t.equal(event?.name, 'http_services.call_not_sent')
  t.equal(event?.attributes?.['error.type'], 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED')
  t.equal(event?.attributes?.['http_services.service'], 'users')
  t.match(event?.attributes?.['http_services.reason'], /bulkhead/i)
  t.same(otel.spans().map((s) => s.name), ['GET'], 'one CLIENT span: the call that was sent')
  const rm = await otel.collect()
  const rejections = rm.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'http_services.client.bulkhead_rejections')
  t.same(rejections?.dataPoints.map((p) => [p.attributes, p.value]), [[{ 'http_services.service': 'users', 'http_services.reason': 'full' }, 1]])
})

t.test('telemetry: false makes no span and sends no traceparent', async (t) => {
  const { otel, server, users } = await setup(t, (_req, res) => sendJson(res, 200, {}), {}, false)
  await otel.inSpan('parent', async () => { await users.getJson('/x') })
  t.equal(otel.spans().length, 0)
  t.equal(server.requests[0].headers.traceparent, undefined)
})

t.test('the channels are unsubscribed once every registry with telemetry closed', async (t) => {
  const { users, services } = await setup(t, (_req, res) => sendJson(res, 200, {}))
  await users.getJson('/x')
  t.ok(attemptStart.hasSubscribers)
  await services.close()
  t.notOk(attemptStart.hasSubscribers, 'nothing left subscribed')
  await services.close()
  t.notOk(attemptStart.hasSubscribers, 'a second close changes nothing')
})

t.test('each redirect hop and each hedge is a span of its own, numbered by resend_count in the order they went out', async (t) => {
  let n = 0
  const { otel, server, users } = await setup(t, (req, res) => {
    if (req.url === '/old') {
      res.writeHead(302, { location: '/new' })
      res.end()
      return
    }
    // The first request to /new hangs long enough for a hedge to go out.
    setTimeout(() => sendJson(res, 200, { n }), ++n === 1 ? 300 : 0)
  }, { retry: false, followRedirects: 3, hedge: { delay: 30, maxHedges: 1 } })
  await otel.inSpan('parent', async () => { await users.getJson('/old') })
  // The first attempt: /old, redirected to /new, which hangs; the hedge: /old again, then /new, which wins. Which
  // request goes out when depends on timing under load: each is checked for what it is, not for its place.
  const spans = otel.spans()
  t.same(spans.map((s) => s.attributes['http.request.resend_count']).sort(), [1, 2, 3, undefined], 'numbered 0 to 3 in send order')
  const seen = spans.map((s) => `${String(s.attributes['url.full']).slice(server.url.length)} ${String(s.attributes['http.response.status_code'])}`)
  t.same(seen.sort(), ['/new 200', '/new undefined', '/old 302', '/old 302'])
  const lost = spans.find((s) => s.attributes['http.response.status_code'] === undefined)
  t.equal(lost?.status.code, SpanStatusCode.ERROR, 'the losing request, cancelled, ends as a failure')
  t.same(server.requests.map((r) => r.url).sort(), ['/new', '/new', '/old', '/old'])
  const rm = await otel.collect()
  const hedges = rm.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'http_services.client.hedges')
  t.same(hedges?.dataPoints.map((p) => [p.attributes, p.value]), [[{ 'http_services.service': 'users' }, 1]])
})

t.test('a call the open breaker stops leaves an event saying so', async (t) => {
  const { otel, users } = await setup(t, (_req, res) => sendJson(res, 503, {}),
    { retry: false, throwHttpErrors: false, breaker: { minimumRequests: 1, errorPercentage: 1, resetAfter: 60000 } })
  await (await users.get('/x')).dump()
  await otel.inSpan('parent', async () => {
    await t.rejects(users.get('/x'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  })
  const parent = otel.spans(true).find((s) => s.name === 'parent')
  t.same(parent?.events.map((e) => [e.name, e.attributes?.['error.type']]), [['http_services.call_not_sent', 'HTTP_SERVICES_ERR_CIRCUIT_OPEN']])
  t.equal(otel.spans().length, 1, 'the first call\'s span only')
})

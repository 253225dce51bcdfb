import type { DataPoint, Histogram, ResourceMetrics } from '@opentelemetry/sdk-metrics'
import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'
import { setupOtel } from '../helpers/otel'

/** The metric `name` of the library's scope, or `undefined`. */
function metric (rm: ResourceMetrics, name: string) {
  const scope = rm.scopeMetrics.find((s) => s.scope.name === 'fastify-http-services')
  return scope?.metrics.find((m) => m.descriptor.name === name)
}

t.test('http.client.request.duration: a histogram in seconds with the semconv buckets, per request with its status and the service', async (t) => {
  const otel = setupOtel(t)
  let n = 0
  const server = await startServer((_req, res) => sendJson(res, ++n < 2 ? 503 : 200, {}))
  const { meterProvider } = otel
  const services = createHttpServices({
    services: { users: { baseUrl: server.url, retry: { attempts: 2, delay: () => 1 } } },
    telemetry: { meterProvider }
  })
  t.teardown(async () => { await services.close(); await server.close() })
  await services.open()
  await services.client('users').getJson('/users/:id', { params: { id: 1 } })

  const rm = await otel.collect()
  const duration = metric(rm, 'http.client.request.duration')
  t.equal(duration?.descriptor.unit, 's')
  const points = (duration?.dataPoints ?? []) as Array<DataPoint<Histogram>>
  t.same(points[0]?.value.buckets.boundaries, [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
  const common = {
    'http.request.method': 'GET',
    'http_services.service': 'users',
    'url.template': '/users/:id',
    'network.protocol.version': '1.1',
    'server.address': '127.0.0.1',
    'server.port': server.port,
    'url.scheme': 'http'
  }
  t.same(points.map((p) => p.attributes).sort((a, b) => Number(a['http.response.status_code']) - Number(b['http.response.status_code'])), [
    { ...common, 'http.response.status_code': 200 },
    { ...common, 'http.response.status_code': 503, 'error.type': '503' }
  ])
  t.same(points.map((p) => p.value.count), [1, 1])
  t.ok(points.every((p) => (p.value.sum ?? 0) < 10), 'recorded in seconds, not milliseconds')

  const active = metric(rm, 'http.client.active_requests')
  t.equal(active?.descriptor.unit, '{request}')
  t.same(active?.dataPoints.map((p) => p.value), [0], 'nothing in flight once the call is over')
  t.same(active?.dataPoints[0]?.attributes, {
    'http.request.method': 'GET', 'http_services.service': 'users', 'server.address': '127.0.0.1', 'server.port': server.port, 'url.scheme': 'http'
  })
  t.same(metric(rm, 'http_services.client.retries')?.dataPoints.map((p) => [p.attributes, p.value]), [[{ 'http_services.service': 'users' }, 1]])
})

t.test('open connections and queued requests come from the pool stats, per service', async (t) => {
  const otel = setupOtel(t)
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({ services: { users: { baseUrl: server.url } }, telemetry: { meterProvider: otel.meterProvider } })
  t.teardown(async () => { await services.close(); await server.close() })
  await services.open()
  await services.client('users').getJson('/x')
  const rm = await otel.collect()
  const open = metric(rm, 'http.client.open_connections')
  t.equal(open?.descriptor.unit, '{connection}')
  t.same(open?.dataPoints.map((p) => [p.attributes['http.connection.state'], p.attributes['http_services.service']]),
    [['active', 'users'], ['idle', 'users']])
  t.equal(open?.dataPoints.reduce((sum, p) => sum + (p.value as number), 0), 1, 'the one connection the call opened, active or idle')
  t.same(metric(rm, 'http_services.client.queued_requests')?.dataPoints.map((p) => p.value), [0])
})

t.test('policy counters: breaker changes, rate-limit rejections, retries the budget refused, fallbacks', async (t) => {
  const otel = setupOtel(t)
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({
    services: {
      flaky: {
        baseUrl: server.url,
        retry: { attempts: 1, delay: () => 1, budget: { ratio: 0, minPerSecond: 0 } },
        breaker: { minimumRequests: 2, errorPercentage: 50, resetAfter: 60000 },
        fallback: () => ({ ok: false })
      },
      limited: { baseUrl: server.url, retry: false, breaker: false, throwHttpErrors: false, rateLimit: { rate: 1, interval: 60000, maxWait: 0 } }
    },
    telemetry: { meterProvider: otel.meterProvider }
  })
  t.teardown(async () => { await services.close(); await server.close() })
  await services.open()
  for (let i = 0; i < 3; i++) await services.client('flaky').getJson('/x')
  await services.client('limited').get('/x').then(async (res) => { await res.dump() })
  await t.rejects(services.client('limited').get('/x'), { code: 'HTTP_SERVICES_ERR_RATE_LIMITED' })
  const rm = await otel.collect()
  const values = (name: string) => metric(rm, name)?.dataPoints.map((p) => [p.attributes, p.value])
  t.same(values('http_services.client.breaker_state_changes'), [[{ 'http_services.service': 'flaky', 'http_services.breaker.state': 'open' }, 1]])
  t.same(values('http_services.client.retries_refused'), [[{ 'http_services.service': 'flaky' }, 1]], 'the first call\'s: the second\'s retry is refused by the breaker it opened')
  t.same(values('http_services.client.fallbacks'), [[{ 'http_services.service': 'flaky' }, 3]])
  t.same(values('http_services.client.rate_limit_rejections'), [[{ 'http_services.service': 'limited' }, 1]])
})

t.test('a service with several upstreams and a breaker reports each upstream\'s pool with its server.address and port', async (t) => {
  const otel = setupOtel(t)
  const a = await startServer((_req, res) => sendJson(res, 200, {}))
  const b = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({ services: { users: { baseUrl: [a.url, b.url] } }, telemetry: { meterProvider: otel.meterProvider } })
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  await services.open()
  for (let i = 0; i < 4; i++) await services.client('users').getJson('/x')
  const rm = await otel.collect()
  const queued = metric(rm, 'http_services.client.queued_requests')
  t.same(queued?.dataPoints.map((p) => p.attributes['server.port']).sort(), [a.port, b.port].sort())
  t.ok(queued?.dataPoints.every((p) => p.attributes['server.address'] === '127.0.0.1' && p.attributes['http_services.service'] === 'users'))
})

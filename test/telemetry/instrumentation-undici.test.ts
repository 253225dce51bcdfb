import { context, propagation, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { createHttpServices, isHttpServicesRequest } from '../../index'
import { ownRequest, ownRequestDone } from '../../lib/telemetry/undici-instrumentation'
import { sendJson, startServer } from '../helpers/server'

// @opentelemetry/instrumentation-undici makes a CLIENT span per undici request, ours too: its `ignoreRequestHook` set
// to `isHttpServicesRequest` leaves ours to us. The instrumentation needs Node >= 22.15.
const [major, minor] = process.versions.node.split('.').map(Number)
const supported = major > 22 || (major === 22 && minor >= 15)

async function setup (t: Test, config: ConstructorParameters<typeof UndiciInstrumentation>[0]) {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  trace.setGlobalTracerProvider(provider)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  const instrumentation = new UndiciInstrumentation(config)
  instrumentation.setTracerProvider(provider)
  instrumentation.enable()
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({ services: { users: { baseUrl: server.url, retry: false } } })
  t.teardown(async () => {
    instrumentation.disable()
    await services.close()
    await server.close()
    await provider.shutdown()
    trace.disable()
    propagation.disable()
    context.disable()
  })
  await services.open()
  return { exporter, server, users: services.client('users') }
}

t.test('with ignoreRequestHook: isHttpServicesRequest, a call has one CLIENT span and one traceparent; other undici requests keep theirs', { skip: supported ? false : `instrumentation-undici needs Node >= 22.15 (this is ${process.version})` }, async (t) => {
  const { exporter, server, users } = await setup(t, { ignoreRequestHook: isHttpServicesRequest })
  await users.getJson('/x')
  const clients = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT)
  t.same(clients.map((s) => s.instrumentationScope.name), ['fastify-http-services'])
  t.equal(server.requests[0].headers.traceparent, `00-${clients[0].spanContext().traceId}-${clients[0].spanContext().spanId}-01`)
  // A request of the app's own through undici is still the instrumentation's.
  const res = await request(`${server.url}/own`)
  await res.body.dump()
  t.same(exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT).map((s) => s.instrumentationScope.name),
    ['fastify-http-services', '@opentelemetry/instrumentation-undici'])
})

t.test('without the hook, instrumentation-undici adds a second CLIENT span to each request (why the README asks for it)', { skip: supported ? false : `instrumentation-undici needs Node >= 22.15 (this is ${process.version})` }, async (t) => {
  const { exporter, users } = await setup(t, {})
  await users.getJson('/x')
  const clients = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT)
  t.equal(clients.length, 2)
})

t.test('isHttpServicesRequest is false for a request with no span of ours, whatever its headers', async (t) => {
  t.equal(isHttpServicesRequest({ headers: ['traceparent', `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`] }), false)
  t.equal(isHttpServicesRequest({ headers: 'x: 1\r\n' }), false)
  t.equal(isHttpServicesRequest({}), false)
})

t.test('isHttpServicesRequest finds a span of ours in undici\'s headers, as an array or as a string, while it is in flight', async (t) => {
  const spanId = '0123456789abcdef'
  const traceparent = `00-${'a'.repeat(32)}-${spanId}-01`
  ownRequest(spanId)
  t.equal(isHttpServicesRequest({ headers: ['x-request-id', '1', 'traceparent', traceparent] }), true)
  t.equal(isHttpServicesRequest({ headers: `x-request-id: 1\r\ntraceparent: ${traceparent}\r\n` }), true)
  t.equal(isHttpServicesRequest({ headers: ['traceparent', `00-${'a'.repeat(32)}-${'c'.repeat(16)}-01`] }), false, 'another span')
  t.equal(isHttpServicesRequest({ headers: { traceparent } }), false, 'an object is not how undici holds headers')
  ownRequestDone(spanId)
  t.equal(isHttpServicesRequest({ headers: ['traceparent', traceparent] }), false, 'once it ended')
})

import { context, propagation, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { registerInstrumentations } from '@opentelemetry/instrumentation'
import { FastifyInstrumentation } from '@opentelemetry/instrumentation-fastify'
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import t from 'tap'

// @opentelemetry/instrumentation-fastify (deprecated upstream in favour of @fastify/otel, still widely used) with
// instrumentation-http, which makes the request's SERVER span. Both patch modules as they are required: fastify and
// the test's servers are loaded after they are registered.

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
trace.setGlobalTracerProvider(provider)
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
const unregister = registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new FastifyInstrumentation()] })

const Fastify = require('fastify') as typeof import('fastify').default
const httpServices = require('../../index') as typeof import('../../index')
const { sendJson, startServer } = require('../helpers/server') as typeof import('../helpers/server')

t.teardown(async () => {
  unregister()
  await provider.shutdown()
  trace.disable()
  propagation.disable()
  context.disable()
})

t.test('with instrumentation-fastify and instrumentation-http, the call\'s span is a child of the request\'s span, and the downstream continues the trace', async (t) => {
  const downstream = await startServer((_req, res) => sendJson(res, 200, { id: 1 }))
  const app = Fastify()
  t.teardown(async () => { await app.close(); await downstream.close() })
  await app.register(httpServices, { services: { users: { baseUrl: downstream.url } } })
  app.get('/orders/:id', async (request) => await request.httpClient('users').getJson('/users/:id', { params: { id: 1 } }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  const res = await fetch(`http://127.0.0.1:${port}/orders/9`)
  t.same(await res.json(), { id: 1 })
  let spans: ReadableSpan[] = []
  const isInbound = (s: ReadableSpan): boolean => s.kind === SpanKind.SERVER && s.attributes['url.path'] === '/orders/9'
  for (let i = 0; i < 100 && !(spans = exporter.getFinishedSpans()).some(isInbound); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const inbound = spans.find(isInbound)
  const client = spans.find((s) => s.kind === SpanKind.CLIENT && s.instrumentationScope.name === 'fastify-http-services')
  t.ok(inbound, 'instrumentation-http made the request\'s span')
  t.ok(client, 'the call\'s span')
  if (inbound === undefined || client === undefined) return
  t.equal(client.spanContext().traceId, inbound.spanContext().traceId, 'one trace')
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]))
  const parent = byId.get(client.parentSpanContext?.spanId ?? '')
  t.ok(parent !== undefined, `its parent is a span of the request (${parent?.name ?? 'none'})`)
  const chain: string[] = []
  for (let s: ReadableSpan | undefined = client; s !== undefined; s = byId.get(s.parentSpanContext?.spanId ?? '')) chain.push(s.name)
  t.equal(chain.at(-1), inbound.name, `the request's span is its ancestor (${chain.join(' <- ')})`)
  const sent = downstream.requests[0].headers.traceparent
  t.equal(sent, `00-${client.spanContext().traceId}-${client.spanContext().spanId}-01`, 'the downstream gets the call span\'s traceparent')
  // The downstream is a node:http server too: instrumentation-http gives it a SERVER span continuing the trace.
  const served = spans.find((s) => s.kind === SpanKind.SERVER && s !== inbound)
  t.equal(served?.parentSpanContext?.spanId, client.spanContext().spanId, 'the downstream\'s span is a child of the call\'s span')
  t.equal(spans.filter((s) => s.kind === SpanKind.CLIENT).length, 1, 'instrumentation-http adds no CLIENT span: undici does not use node:http')
})

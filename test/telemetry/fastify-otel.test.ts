import { context, propagation, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import FastifyOtelInstrumentation from '@fastify/otel'
import Fastify from 'fastify'
import t from 'tap'
import httpServices from '../../index'
import { sendJson, startServer } from '../helpers/server'

// @fastify/otel, the Fastify team's instrumentation, with the SDK registered globally (as the Node SDK does): the
// plugin's default `telemetry: true` uses the global providers.

t.test('with @fastify/otel, a call from a route handler is a CLIENT span of the request\'s trace, under its span, and the downstream gets its traceparent', async (t) => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  trace.setGlobalTracerProvider(provider)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  const instrumentation = new FastifyOtelInstrumentation()
  instrumentation.setTracerProvider(provider)
  t.teardown(async () => {
    instrumentation.disable()
    await provider.shutdown()
    trace.disable()
    propagation.disable()
    context.disable()
  })

  const downstream = await startServer((_req, res) => sendJson(res, 200, { id: 1 }))
  const app = Fastify()
  t.teardown(async () => { await app.close(); await downstream.close() })
  await app.register(instrumentation.plugin())
  await app.register(httpServices, { services: { users: { baseUrl: downstream.url } } })
  app.get('/orders/:id', async (request) => await request.httpClient('users').getJson('/users/:id', { params: { id: 1 } }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }

  const res = await fetch(`http://127.0.0.1:${address.port}/orders/9`)
  t.same(await res.json(), { id: 1 })
  // The request span ends once the response is sent: wait for it.
  let spans: ReadableSpan[] = []
  for (let i = 0; i < 100 && !(spans = exporter.getFinishedSpans()).some((s) => s.kind === SpanKind.SERVER); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const server = spans.find((s) => s.kind === SpanKind.SERVER)
  const client = spans.find((s) => s.kind === SpanKind.CLIENT)
  t.ok(server, 'the request span')
  t.ok(client, 'the call\'s span')
  if (server === undefined || client === undefined) return
  t.equal(client.name, 'GET /users/:id')
  t.equal(client.spanContext().traceId, server.spanContext().traceId, 'one trace')
  // @fastify/otel runs the handler in a span of its own, a child of the request's: the call's span hangs below it.
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]))
  const chain: string[] = []
  for (let s: ReadableSpan | undefined = client; s !== undefined; s = byId.get(s.parentSpanContext?.spanId ?? '')) chain.push(s.name)
  t.equal(chain.at(-1), server.name, `the request span is an ancestor (${chain.join(' <- ')})`)
  const parent = byId.get(client.parentSpanContext?.spanId ?? '')
  t.ok(parent === server || parent?.parentSpanContext?.spanId === server.spanContext().spanId, 'its parent is the request span or its handler span')
  t.equal(downstream.requests[0].headers.traceparent, `00-${client.spanContext().traceId}-${client.spanContext().spanId}-01`)
})

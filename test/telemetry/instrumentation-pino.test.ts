import { Writable } from 'node:stream'
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import FastifyOtelInstrumentation from '@fastify/otel'
import { registerInstrumentations } from '@opentelemetry/instrumentation'
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import t from 'tap'

// Fastify's `request.log` with @opentelemetry/instrumentation-pino: pino's mixin adds the active span's ids to every
// line, the library's retry lines included, with telemetry on or off. pino and fastify are required after the
// instrumentation is registered: it patches pino as it loads.

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
trace.setGlobalTracerProvider(provider)
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
const fastifyOtel = new FastifyOtelInstrumentation()
const unregister = registerInstrumentations({ instrumentations: [new PinoInstrumentation(), fastifyOtel] })

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

for (const telemetry of [false, true]) {
  t.test(`a retry line on request.log carries the request's trace_id and span_id once (telemetry: ${String(telemetry)})`, async (t) => {
    let n = 0
    const downstream = await startServer((_req, res) => sendJson(res, ++n === 1 ? 503 : 200, {}))
    const lines: Array<Record<string, unknown>> = []
    const raw: string[] = []
    const stream = new Writable({ write (chunk, _enc, cb) { raw.push(String(chunk)); lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); cb() } })
    const app = Fastify({ logger: { level: 'warn', stream } })
    t.teardown(async () => { await app.close(); await downstream.close() })
    await app.register(fastifyOtel.plugin())
    await app.register(httpServices, { services: { users: { baseUrl: downstream.url, retry: { attempts: 1, delay: () => 1 } } }, telemetry })
    let ids: { traceId: string, spanId: string } | undefined
    app.get('/orders', async (request) => {
      ids = trace.getActiveSpan()?.spanContext()
      return await request.httpClient('users').getJson('/x')
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    await (await fetch(`http://127.0.0.1:${port}/orders`)).text()
    const retry = lines.find((l) => String(l.msg).startsWith('retrying'))
    t.ok(retry, 'the retry line')
    t.equal(retry?.trace_id, ids?.traceId)
    t.equal(retry?.span_id, ids?.spanId, 'the handler\'s active span')
    t.ok(retry?.reqId !== undefined, 'on the request\'s logger')
    const text = raw.find((l) => l.includes('"retrying'))
    t.equal(text?.split('"trace_id"').length, 2, 'one trace_id key in the line')
  })
}

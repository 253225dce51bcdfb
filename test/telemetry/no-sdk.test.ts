import diagnosticsChannel from 'node:diagnostics_channel'
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { InMemoryMetricExporter, AggregationTemporality, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import t, { type Test } from 'tap'
import { createHttpServices, type HttpServicesOptions } from '../../index'
import { kChannelNames } from '../../lib/diagnostics/channels'
import { resetApiCache } from '../../lib/telemetry/load-api'
import { sendJson, startServer } from '../helpers/server'

/**
 * The channels of calls and attempts something subscribes to now: the ones that cost every call something (the log
 * lines' rare channels are subscribed whenever a registry is open).
 */
const subscribed = (): string[] => kChannelNames
  .filter((name) => /:(call|attempt):/.test(name) && diagnosticsChannel.channel(name).hasSubscribers)

async function setup (t: Test, options: Partial<HttpServicesOptions> = {}) {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({ services: { users: { baseUrl: server.url } }, ...options })
  t.teardown(async () => { await services.close(); await server.close() })
  await services.open()
  return { server, services, users: services.client('users') }
}

let early: Awaited<ReturnType<typeof setup>> | undefined

t.test('the API installed but no SDK registered: nothing subscribes, no header is added, nothing throws', async (t) => {
  const { server, users } = early = await setup(t.parent as unknown as Test) // closed at the end of the file: the SDK test below calls it
  t.same(subscribed(), [], 'the channels are as they were: calls cost what they cost without the API')
  await users.getJson('/x')
  t.equal(server.requests[0].headers.traceparent, undefined)
})

t.test('@opentelemetry/api not installed: telemetry stays off without a word', async (t) => {
  resetApiCache(null)
  t.teardown(() => { resetApiCache(undefined) })
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const { users, server } = await setup(t, { telemetry: { tracerProvider, propagator: new W3CTraceContextPropagator() } })
  t.same(subscribed(), [])
  await users.getJson('/x')
  t.equal(exporter.getFinishedSpans().length, 0)
  t.equal(server.requests[0].headers.traceparent, undefined)
})

t.test('an SDK registered globally before the services open: spans and metrics go to the global providers', async (t) => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  trace.setGlobalTracerProvider(tracerProvider)
  metrics.setGlobalMeterProvider(meterProvider)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  t.teardown(async () => {
    await tracerProvider.shutdown()
    await meterProvider.shutdown()
    trace.disable()
    metrics.disable()
    propagation.disable()
    context.disable()
  })
  await early?.users.getJson('/x')
  const { users, server } = await setup(t)
  await users.getJson('/x')
  t.equal(exporter.getFinishedSpans().length, 1, 'the registry of the first test, opened before the SDK, stays silent')
  const [span] = exporter.getFinishedSpans()
  t.equal(span?.name, 'GET')
  t.equal(server.requests[0].headers.traceparent, `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`)
  const { resourceMetrics } = await reader.collect()
  const names = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.descriptor.name))
  t.ok(names.includes('http.client.request.duration'))
})

t.test('telemetry: a value that is neither a boolean nor providers is refused', async (t) => {
  t.throws(() => createHttpServices({ services: {}, telemetry: 'yes' as never }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message: /telemetry/ })
  t.throws(() => createHttpServices({ services: {}, telemetry: { tracerProvider: {} as never } }), { message: /telemetry\.tracerProvider.*TracerProvider/ })
  t.throws(() => createHttpServices({ services: {}, telemetry: { exporter: {} } as never }), { message: /telemetry.*unknown option/ })
  t.doesNotThrow(() => createHttpServices({ services: {}, telemetry: false }))
})

t.test('metrics alone leave the call channel alone: only tracing needs the calls stopped before the wire', async (t) => {
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  t.teardown(async () => { await meterProvider.shutdown() })
  const { services } = await setup(t, { telemetry: { meterProvider } })
  t.same(subscribed(), ['fastify-http-services:attempt:start', 'fastify-http-services:attempt:end', 'fastify-http-services:attempt:error'])
  await services.close()
  t.same(subscribed(), [])
})

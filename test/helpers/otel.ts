/**
 * The OpenTelemetry SDK as the telemetry tests use it: in-memory spans and metrics, the AsyncLocalStorage context
 * manager, the W3C propagator. The providers are passed to the registry (`telemetry` option); only the context
 * manager is global (the API has no other).
 */
import { context, propagation, trace, metrics, type Span } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { Test } from 'tap'

export interface Otel {
  tracerProvider: BasicTracerProvider
  meterProvider: MeterProvider
  propagator: W3CTraceContextPropagator
  exporter: InMemorySpanExporter
  /** The spans ended so far, CLIENT spans of this library only unless `all`. */
  spans: (all?: boolean) => ReadableSpan[]
  /** Collects the metrics now. */
  collect: () => Promise<ResourceMetrics>
  /** Runs `fn` under a new active span (a stand-in for the inbound request's). */
  inSpan: <T>(name: string, fn: (span: Span) => Promise<T>) => Promise<T>
}

/** An SDK of providers kept by the test (not registered globally), closed at teardown. */
export function setupOtel (t: Test): Otel {
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  t.teardown(async () => {
    await tracerProvider.shutdown()
    await meterProvider.shutdown()
    context.disable()
    propagation.disable()
    trace.disable()
    metrics.disable()
  })
  const tracer = tracerProvider.getTracer('test')
  return {
    tracerProvider,
    meterProvider,
    propagator: new W3CTraceContextPropagator(),
    exporter,
    spans: (all = false) => exporter.getFinishedSpans().filter((s) => all || s.instrumentationScope.name === 'fastify-http-services'),
    collect: async () => {
      const { resourceMetrics, errors } = await reader.collect()
      if (errors.length > 0) throw errors[0]
      return resourceMetrics
    },
    inSpan: async (name, fn) => await tracer.startActiveSpan(name, async (span) => {
      try {
        return await fn(span)
      } finally {
        span.end()
      }
    })
  }
}

/**
 * `TRACING=1 npm run example`: an OpenTelemetry SDK in memory (spans kept, nothing exported), @fastify/otel for the
 * inbound requests, and a printer that shows one request's spans as a tree. What an app does with a real exporter,
 * minus the exporter: see README, "Telemetry".
 */
import { context, propagation, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import FastifyOtelInstrumentation from '@fastify/otel'

export interface Tracing {
  /** The spans ended so far. */
  spans: () => ReadableSpan[]
  /** Unregisters everything `startTracing` registered. */
  stop: () => Promise<void>
}

/** Registers the SDK globally: call it before the app is built (@fastify/otel hooks in as Fastify initialises). */
export function startTracing (): Tracing {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  trace.setGlobalTracerProvider(provider)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  const fastifyOtel = new FastifyOtelInstrumentation({ registerOnInitialization: true })
  fastifyOtel.setTracerProvider(provider)
  fastifyOtel.enable()
  return {
    spans: () => exporter.getFinishedSpans(),
    stop: async () => {
      fastifyOtel.disable()
      await provider.shutdown()
      trace.disable()
      propagation.disable()
      context.disable()
    }
  }
}

const kKinds: Record<number, string> = { [SpanKind.SERVER]: 'SERVER', [SpanKind.CLIENT]: 'CLIENT', [SpanKind.INTERNAL]: 'INTERNAL' }

/** What a line shows of a span's attributes: the HTTP facts, when it has them. */
function facts (s: ReadableSpan): string {
  const a = s.attributes
  const parts: string[] = []
  if (a['http_services.service'] !== undefined) parts.push(`service=${String(a['http_services.service'])}`)
  if (a['http.response.status_code'] !== undefined) parts.push(`status=${String(a['http.response.status_code'])}`)
  if (a['http.request.resend_count'] !== undefined) parts.push(`resend_count=${String(a['http.request.resend_count'])}`)
  if (a['error.type'] !== undefined) parts.push(`error.type=${String(a['error.type'])}`)
  for (const e of s.events) if (e.name !== 'exception') parts.push(`event=${e.name}`)
  return parts.length === 0 ? '' : `  ${parts.join(' ')}`
}

/** The spans of the trace of `root` (a SERVER span), as an indented tree in start order. */
export function spanTree (spans: ReadableSpan[], root: ReadableSpan): string {
  const traceId = root.spanContext().traceId
  const children = new Map<string, ReadableSpan[]>()
  for (const s of spans) {
    if (s.spanContext().traceId !== traceId) continue
    const parent = s.parentSpanContext?.spanId ?? ''
    children.set(parent, [...(children.get(parent) ?? []), s])
  }
  const lines: string[] = []
  const walk = (s: ReadableSpan, depth: number): void => {
    const ms = s.duration[0] * 1e3 + s.duration[1] / 1e6
    lines.push(`${'  '.repeat(depth)}${depth === 0 ? '' : '└─ '}${s.name} [${kKinds[s.kind] ?? 'OTHER'}] ${ms.toFixed(1)} ms${facts(s)}`)
    const below = (children.get(s.spanContext().spanId) ?? []).sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1])
    for (const c of below) walk(c, depth + 1)
  }
  walk(root, 0)
  return lines.join('\n')
}

/**
 * OpenTelemetry for the services' calls: a subscriber of the diagnostics channels (it edits no policy) that makes a
 * CLIENT span per request on the wire and records the HTTP client metrics. A registry with telemetry on joins when it
 * opens (`retainTelemetry`) and leaves when it closes; the channels are subscribed while at least one registry of
 * this copy of the package is in, so a process with telemetry off everywhere pays nothing.
 *
 * A registry joins only when it has something to record to: explicit providers, or an SDK registered globally by the
 * time it opens (OpenTelemetry's rule: start the SDK before the app). With the API installed but no SDK, nothing
 * subscribes: calls cost what they cost without the API.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { Attributes, Span, TextMapPropagator, Tracer } from '@opentelemetry/api'
import {
  attemptEnd, attemptError, attemptStart, breakerState, bulkheadRejected, callChannel, fallbackServed, hedgeFired,
  rateLimitRejected, retryRefused, retryScheduled
} from '../diagnostics/channels'
import type {
  AttemptMessage, BreakerStateMessage, BulkheadMessage, CallEvent, CallMessage, RetryRefusedMessage
} from '../diagnostics/messages'
import type { TelemetryOptions } from '../config/types'
import type { ServiceStats } from '../service'
import { setTraceFields } from '../diagnostics/log-subscriber'
import { errorType, kServiceAttribute } from './attributes'
import { globalMetricsRegistered, globalTracingRegistered, loadApi, type Api } from './load-api'
import { createInstruments, type Instruments } from './metrics'
import {
  callNotSent, callSent, countRequest, endRequestSpan, failRequestSpan, requestAttributes, startRequestSpan, type SpanSettings
} from './spans'

/** @internal What a registry hands over when it opens. */
export interface TelemetrySource {
  /** The registry (`message.registry` of its calls' messages). */
  readonly registry: object
  /** Its services' stats, read when the metrics are collected. */
  readonly stats: () => Record<string, ServiceStats>
  /** `network.protocol.version` by service name (`undefined`: the service may negotiate HTTP/2). */
  readonly protocols: ReadonlyMap<string, string | undefined>
}

/** One registry's telemetry. */
interface RegistryTelemetry {
  readonly api: Api
  readonly spans: SpanSettings | undefined
  readonly instruments: Instruments | undefined
  readonly protocols: ReadonlyMap<string, string | undefined>
}

/** What this module keeps of a request in flight. */
interface RequestState {
  readonly span: Span | undefined
  readonly attributes: Attributes
}

const kScope = 'fastify-http-services'

/** The package's version, for the tracer's and meter's scope; `undefined` if a bundler left package.json out. */
function packageVersion (): string | undefined {
  try {
    // Self-reference: the same specifier from lib/ (tests) and dist/lib/ (the package).
    return (require('fastify-http-services/package.json') as { version: string }).version
  } catch {
    return undefined
  }
}

const registries = new Map<object, RegistryTelemetry>()
const requests = new WeakMap<AttemptMessage, RequestState>()

function telemetryOf (m: { registry: object | undefined }): RegistryTelemetry | undefined {
  const registry = m.registry
  return registry === undefined ? undefined : registries.get(registry)
}

function onAttemptStart (message: unknown): void {
  const m = message as AttemptMessage
  const t = telemetryOf(m)
  if (t === undefined) return
  const resends = countRequest(m.call)
  const attributes = requestAttributes(m, t.protocols.get(m.service))
  const span = t.spans === undefined ? undefined : startRequestSpan(t.spans, m, attributes, resends)
  if (t.instruments !== undefined) t.instruments.active.add(1, activeAttributes(attributes))
  requests.set(m, { span, attributes })
}

/** `http.client.active_requests` takes the request's method, server and scheme only. */
function activeAttributes (a: Attributes): Attributes {
  const { 'network.protocol.version': _p, 'url.template': _t, ...rest } = a
  return rest
}

function onAttemptEnd (message: unknown): void {
  const m = message as AttemptMessage
  const t = telemetryOf(m)
  const state = requests.get(m)
  if (t === undefined || state === undefined) return
  requests.delete(m)
  const status = m.status as number
  if (state.span !== undefined) endRequestSpan(t.api, state.span, status)
  const i = t.instruments
  if (i !== undefined) {
    i.active.add(-1, activeAttributes(state.attributes))
    const attributes: Attributes = { ...state.attributes, 'http.response.status_code': status }
    if (status >= 400) attributes['error.type'] = String(status)
    i.duration.record((m.duration ?? 0) / 1000, attributes)
  }
}

function onAttemptError (message: unknown): void {
  const m = message as AttemptMessage
  const t = telemetryOf(m)
  const state = requests.get(m)
  if (t === undefined || state === undefined) return
  requests.delete(m)
  if (state.span !== undefined) failRequestSpan(t.api, state.span, m)
  const i = t.instruments
  if (i !== undefined) {
    i.active.add(-1, activeAttributes(state.attributes))
    const attributes: Attributes = { ...state.attributes, 'error.type': errorType(m.error) }
    if (m.status !== undefined) attributes['http.response.status_code'] = m.status
    i.duration.record((m.duration ?? 0) / 1000, attributes)
  }
}

function onCallError (message: unknown): void {
  const m = message as CallMessage
  const t = telemetryOf(m)
  if (t === undefined || t.spans === undefined || callSent(m)) return
  callNotSent(t.api, m)
}

/** A counter of the library's, by service (and `extra` attributes). */
function count (pick: (i: Instruments) => Instruments['retries'], extra?: (m: never) => Record<string, string>) {
  return (message: unknown): void => {
    const m = message as CallEvent
    const i = telemetryOf(m)?.instruments
    if (i === undefined) return
    const attributes = extra === undefined ? { [kServiceAttribute]: m.service } : { [kServiceAttribute]: m.service, ...extra(m as never) }
    pick(i).add(1, attributes)
  }
}

function onRetryRefused (message: unknown): void {
  if ((message as RetryRefusedMessage).refusal === 'budget') countRetryRefused(message)
}
const countRetryRefused = count((i) => i.retriesRefused)

/** The active span's ids for log lines, named as @opentelemetry/instrumentation-pino names them. */
function traceFields (api: Api): Record<string, string> | undefined {
  const span = api.trace.getActiveSpan()
  if (span === undefined) return undefined
  const c = span.spanContext()
  if (!api.isSpanContextValid(c)) return undefined
  return { trace_id: c.traceId, span_id: c.spanId, trace_flags: `0${c.traceFlags.toString(16)}` }
}

/** @internal The channels and their handlers. */
export const kHandlers: ReadonlyArray<{ name: string, handler: (message: unknown) => void }> = [
  { name: attemptStart.name as string, handler: onAttemptStart },
  { name: attemptEnd.name as string, handler: onAttemptEnd },
  { name: attemptError.name as string, handler: onAttemptError },
  { name: retryScheduled.name as string, handler: count((i) => i.retries) },
  { name: retryRefused.name as string, handler: onRetryRefused },
  { name: hedgeFired.name as string, handler: count((i) => i.hedges) },
  { name: breakerState.name as string, handler: count((i) => i.breakerChanges, (m: BreakerStateMessage) => ({ 'http_services.breaker.state': m.state })) },
  { name: bulkheadRejected.name as string, handler: count((i) => i.bulkheadRejections, (m: BulkheadMessage) => ({ 'http_services.reason': m.reason ?? 'full' })) },
  { name: rateLimitRejected.name as string, handler: count((i) => i.rateLimitRejections) },
  { name: fallbackServed.name as string, handler: count((i) => i.fallbacks) }
]

/**
 * The call's `error` event, for the calls stopped before the wire: subscribed only while a registry traces, as a
 * subscriber of the call's TracingChannel makes every call take its published path.
 */
const kCallError = callChannel.error.name as string
let tracing = 0

/**
 * A registry opens with telemetry on: it joins when the API is installed and something records (explicit providers,
 * or an SDK registered globally). Returns what `releaseTelemetry` takes, or `undefined` when it did not join.
 */
export function retainTelemetry (source: TelemetrySource, options: TelemetryOptions): (() => void) | undefined {
  const api = loadApi()
  if (api === undefined) return undefined
  let spans: SpanSettings | undefined
  const version = packageVersion()
  const tracerProvider = options.tracerProvider as { getTracer: (name: string, version?: string) => Tracer } | undefined
  if (tracerProvider !== undefined || globalTracingRegistered(api)) {
    spans = {
      api,
      tracer: (tracerProvider ?? api.trace.getTracerProvider()).getTracer(kScope, version),
      propagator: options.propagator as TextMapPropagator | undefined
    }
  }
  let instruments: Instruments | undefined
  const meterProvider = options.meterProvider as Parameters<typeof api.metrics.setGlobalMeterProvider>[0] | undefined
  if (meterProvider !== undefined || globalMetricsRegistered(api)) {
    instruments = createInstruments((meterProvider ?? api.metrics.getMeterProvider()).getMeter(kScope, version), source.stats)
  }
  if (spans === undefined && instruments === undefined) return undefined
  if (registries.size === 0) {
    for (const { name, handler } of kHandlers) diagnosticsChannel.subscribe(name, handler)
    setTraceFields(() => traceFields(api))
  }
  registries.set(source.registry, { api, spans, instruments, protocols: source.protocols })
  if (spans !== undefined && tracing++ === 0) diagnosticsChannel.subscribe(kCallError, onCallError)
  return () => {
    if (registries.get(source.registry) === undefined) return
    registries.delete(source.registry)
    instruments?.stop()
    if (spans !== undefined && --tracing === 0) diagnosticsChannel.unsubscribe(kCallError, onCallError)
    if (registries.size === 0) {
      for (const { name, handler } of kHandlers) diagnosticsChannel.unsubscribe(name, handler)
      setTraceFields(undefined)
    }
  }
}

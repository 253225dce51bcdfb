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
  callNotSent, callSent, countRequest, endRequestSpan, failRequestSpan, injectContext, requestAttributes, startRequestSpan,
  type SpanSettings
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
  /** A failure of its telemetry was reported (once per registry). */
  failed: boolean
}

/** What this module keeps of a request in flight. */
interface RequestState {
  /** Its span, once started: ended when the request ends, whatever failed in between. */
  span: Span | undefined
  readonly attributes: Attributes
  /** It was counted in `http.client.active_requests`. */
  active: boolean
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

/** Failures not tied to a registry's telemetry (a message without one): reported once for the process. */
let unattributedFailure = false

/**
 * A failure in telemetry (a throwing propagator, tracer, meter or exporter hook, or a bug of ours) never reaches the
 * channel: diagnostics_channel would rethrow it as an uncaught exception and end the process, though the call went
 * well. The first failure of each registry is reported, to OpenTelemetry's diagnostic logger and the call's logger.
 */
function reportFailure (message: unknown, error: unknown): void {
  try {
    const m = (message ?? {}) as { registry?: object, log?: { warn: (o: object, msg: string) => void } }
    const t = telemetryOf({ registry: m.registry })
    if (t === undefined ? unattributedFailure : t.failed) return
    if (t === undefined) unattributedFailure = true
    else t.failed = true
    const text = 'fastify-http-services: telemetry failed and was skipped (later failures of this registry are not reported)'
    ;(t?.api ?? loadApi())?.diag.error(text, error)
    m.log?.warn({ err: error }, text)
  } catch {
    // Nothing of telemetry may throw into the channel, its report included.
  }
}

/** A channel's handler that never throws: a failure is reported (`reportFailure`) and the call goes on. */
function guarded (handler: (message: unknown) => void): (message: unknown) => void {
  return (message) => {
    try {
      handler(message)
    } catch (error) {
      reportFailure(message, error)
    }
  }
}

function onAttemptStart (message: unknown): void {
  const m = message as AttemptMessage
  const t = telemetryOf(m)
  if (t === undefined) return
  const resends = countRequest(m.call)
  const attributes = requestAttributes(m, t.protocols.get(m.service))
  const state: RequestState = { span: undefined, attributes, active: false }
  requests.set(m, state)
  try {
    if (t.spans !== undefined) {
      state.span = startRequestSpan(t.spans, m, attributes, resends)
      // A throwing propagator leaves the span kept: it ends with the request, without the context in its headers.
      injectContext(t.spans, m, state.span)
    }
  } finally {
    if (t.instruments !== undefined) {
      t.instruments.active.add(1, activeAttributes(attributes))
      state.active = true
    }
  }
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
  try {
    if (state.span !== undefined) endRequestSpan(t.api, state.span, status)
  } finally {
    const i = t.instruments
    if (i !== undefined) {
      if (state.active) i.active.add(-1, activeAttributes(state.attributes))
      const attributes: Attributes = { ...state.attributes, 'http.response.status_code': status }
      if (status >= 400) attributes['error.type'] = String(status)
      i.duration.record((m.duration ?? 0) / 1000, attributes)
    }
  }
}

function onAttemptError (message: unknown): void {
  const m = message as AttemptMessage
  const t = telemetryOf(m)
  const state = requests.get(m)
  if (t === undefined || state === undefined) return
  requests.delete(m)
  try {
    if (state.span !== undefined) failRequestSpan(t.api, state.span, m)
  } finally {
    const i = t.instruments
    if (i !== undefined) {
      if (state.active) i.active.add(-1, activeAttributes(state.attributes))
      const attributes: Attributes = { ...state.attributes, 'error.type': errorType(m.error) }
      if (m.status !== undefined) attributes['http.response.status_code'] = m.status
      i.duration.record((m.duration ?? 0) / 1000, attributes)
    }
  }
}

const onCallError = guarded((message: unknown): void => {
  const m = message as CallMessage
  const t = telemetryOf(m)
  if (t === undefined || t.spans === undefined || callSent(m)) return
  callNotSent(t.api, m)
})

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

/** The log lines' trace fields: a failure gives none (it is reported), never a throwing log line. */
function safeTraceFields (api: Api): Record<string, string> | undefined {
  try {
    return traceFields(api)
  } catch (error) {
    reportFailure(undefined, error)
    return undefined
  }
}

/** @internal The channels and their handlers (each `guarded`: none throws into its channel). */
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
].map(({ name, handler }) => ({ name, handler: guarded(handler) }))

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
    setTraceFields(() => safeTraceFields(api))
  }
  registries.set(source.registry, { api, spans, instruments, protocols: source.protocols, failed: false })
  if (spans !== undefined && tracing++ === 0) diagnosticsChannel.subscribe(kCallError, onCallError)
  return () => {
    if (registries.get(source.registry) === undefined) return
    registries.delete(source.registry)
    try {
      instruments?.stop()
    } catch (error) {
      // A throwing meter must not keep the channels subscribed after the last registry.
      loadApi()?.diag.error('fastify-http-services: telemetry failed to stop its metrics', error)
    }
    if (spans !== undefined && --tracing === 0) diagnosticsChannel.unsubscribe(kCallError, onCallError)
    if (registries.size === 0) {
      for (const { name, handler } of kHandlers) diagnosticsChannel.unsubscribe(name, handler)
      setTraceFields(undefined)
    }
  }
}

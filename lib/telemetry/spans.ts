/**
 * CLIENT spans, one per request on the wire (each retry, hedge and redirect hop), under the context active when the
 * call was made: `attempt:start` is published synchronously in the call's async chain, so `context.active()` there
 * is the caller's (the Fastify request's span in a route handler). The span's context is injected into the request's
 * headers through the propagator (`traceparent` by default), so the upstream continues the trace.
 */
import type { Attributes, Context, Span, TextMapPropagator, TextMapSetter, Tracer } from '@opentelemetry/api'
import type { AttemptMessage, CallMessage } from '../diagnostics/messages'
import { errorType, fullUrl, kServiceAttribute, methodAttribute, originParts, spanName, templateOf } from './attributes'
import type { Api } from './load-api'
import { ownRequest, ownRequestDone } from './undici-instrumentation'

/** What spans need of a registry's telemetry. */
export interface SpanSettings {
  readonly api: Api
  readonly tracer: Tracer
  /** The configured propagator; `undefined`: the global one (`propagation.inject`). */
  readonly propagator: TextMapPropagator | undefined
}

/** The request's headers, as the propagator writes them: through `AttemptMessage.addHeader`. */
const setter: TextMapSetter<AttemptMessage> = {
  set (carrier, key, value) {
    carrier.addHeader(key, value)
  }
}

/** The attributes a request's span and its duration share, known when it starts. */
export function requestAttributes (m: AttemptMessage, protocol: string | undefined): Attributes {
  const method = methodAttribute(m.method)
  const attributes: Attributes = { 'http.request.method': method, [kServiceAttribute]: m.service }
  if (method === '_OTHER') attributes['http.request.method_original'] = m.method
  const template = templateOf(m.call.route, m.call.path)
  if (template !== undefined) attributes['url.template'] = template
  if (protocol !== undefined) attributes['network.protocol.version'] = protocol
  const upstream = m.upstream
  if (upstream !== undefined) {
    const parts = originParts(upstream)
    if (parts !== undefined) {
      attributes['server.address'] = parts.address
      attributes['server.port'] = parts.port
      attributes['url.scheme'] = parts.scheme
    }
  }
  return attributes
}

/** Requests made so far by each call, to number the next one's `http.request.resend_count`. */
const sent = new WeakMap<CallMessage, number>()

/** Whether a call sent a request (a call that ends without one was stopped before the wire). */
export function callSent (call: CallMessage): boolean {
  return sent.has(call)
}

/** Counts a request of its call; returns how many the call sent before it. */
export function countRequest (call: CallMessage): number {
  const before = sent.get(call) ?? 0
  sent.set(call, before + 1)
  return before
}

/** Starts the span of a request about to be sent (`injectContext` then writes its context into the headers). */
export function startRequestSpan (s: SpanSettings, m: AttemptMessage, attributes: Attributes, resends: number): Span {
  const { api } = s
  const template = attributes['url.template'] as string | undefined
  const spanAttributes: Attributes = { ...attributes }
  delete spanAttributes['url.scheme']
  if (m.upstream !== undefined) spanAttributes['url.full'] = fullUrl(m.upstream, m.path)
  if (resends > 0) spanAttributes['http.request.resend_count'] = resends
  const parent: Context = api.context.active()
  const span = s.tracer.startSpan(spanName(m.method, template), { kind: api.SpanKind.CLIENT, attributes: spanAttributes }, parent)
  try {
    ownRequest(span.spanContext().spanId)
  } catch (error) {
    span.end()
    throw error
  }
  return span
}

/** Injects the context of the request's span into its headers, through the propagator (`traceparent` by default). */
export function injectContext (s: SpanSettings, m: AttemptMessage, span: Span): void {
  const { api } = s
  const ctx = api.trace.setSpan(api.context.active(), span)
  if (s.propagator !== undefined) s.propagator.inject(ctx, m, setter)
  else api.propagation.inject(ctx, m, setter)
}

/** The request ended with a response: its status, and an error status for >= 400 (client spans, as semconv says). */
export function endRequestSpan (api: Api, span: Span, status: number): void {
  try {
    ownRequestDone(span.spanContext().spanId)
    span.setAttribute('http.response.status_code', status)
    if (status >= 400) {
      span.setAttribute('error.type', String(status))
      span.setStatus({ code: api.SpanStatusCode.ERROR })
    }
  } finally {
    span.end()
  }
}

/** The request failed: `error.type`, the exception, and an error status. */
export function failRequestSpan (api: Api, span: Span, m: AttemptMessage): void {
  try {
    ownRequestDone(span.spanContext().spanId)
    if (m.status !== undefined) span.setAttribute('http.response.status_code', m.status)
    span.setAttribute('error.type', errorType(m.error))
    const error = m.error
    if (error instanceof Error) span.recordException(error)
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
  } finally {
    span.end()
  }
}

/**
 * A call ended without sending anything (open breaker, bulkhead or rate-limit refusal, a deadline already spent):
 * an event on the active span says why, so a trace shows why no request went out.
 */
export function callNotSent (api: Api, call: CallMessage): void {
  const span = api.trace.getActiveSpan()
  if (span === undefined) return
  const error = call.error as { message?: unknown } | null | undefined
  span.addEvent('http_services.call_not_sent', {
    [kServiceAttribute]: call.service,
    'http.request.method': methodAttribute(call.method),
    'error.type': errorType(error),
    'http_services.reason': typeof error?.message === 'string' ? error.message : String(error)
  })
}

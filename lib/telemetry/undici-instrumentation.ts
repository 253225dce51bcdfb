/**
 * Living beside `@opentelemetry/instrumentation-undici`: it makes a CLIENT span for every undici request, this
 * package's included, and would give each of our requests a second span (and a second `traceparent`). Its
 * `ignoreRequestHook` is the one switch: `isHttpServicesRequest` tells it which requests already have our span, by the
 * span id our propagator wrote into their headers.
 */

/** Span ids (16 hex digits) of our requests in flight: written into their headers by the propagator. */
const inFlight = new Set<string>()

/** @internal A request with our span `spanId` is about to be sent. */
export function ownRequest (spanId: string): void {
  inFlight.add(spanId)
}

/** @internal It ended. */
export function ownRequestDone (spanId: string): void {
  inFlight.delete(spanId)
}

const kSpanId = /[0-9a-f]{16}/g

function holdsOwnSpan (value: unknown): boolean {
  if (typeof value !== 'string' || value.length < 16) return false
  for (const [id] of value.matchAll(kSpanId)) if (inFlight.has(id)) return true
  return false
}

/**
 * Whether an undici request (as instrumentation-undici hands it to `ignoreRequestHook`) was sent by this package with
 * a span of its own. Pass it as that hook, so that each request has one CLIENT span:
 *
 * ```js
 * new UndiciInstrumentation({ ignoreRequestHook: isHttpServicesRequest })
 * ```
 */
export function isHttpServicesRequest (request: { headers?: unknown }): boolean {
  if (inFlight.size === 0) return false
  const headers = request?.headers
  if (Array.isArray(headers)) {
    for (let i = 1; i < headers.length; i += 2) if (holdsOwnSpan(String(headers[i]))) return true
    return false
  }
  if (typeof headers === 'string') return holdsOwnSpan(headers)
  return false
}

/**
 * `@opentelemetry/api`, loaded when installed: it is an optional peer dependency. Without it telemetry is off and
 * nothing of it loads. The API is resolved once, from this package's place in the tree, and cached.
 */
import type * as OtelApi from '@opentelemetry/api'

export type Api = typeof OtelApi

let cached: Api | null | undefined

/** The OpenTelemetry API, or `undefined` when `@opentelemetry/api` is not installed (or fails to load). */
export function loadApi (): Api | undefined {
  if (cached === undefined) {
    try {
      cached = require('@opentelemetry/api') as Api
    } catch {
      cached = null
    }
  }
  return cached ?? undefined
}

/**
 * Whether an SDK registered a global tracer provider: without one the API's provider is a proxy whose delegate is
 * the no-op provider, and every span would be a no-op.
 */
export function globalTracingRegistered (api: Api): boolean {
  const provider = api.trace.getTracerProvider() as { getDelegate?: () => unknown }
  if (typeof provider.getDelegate !== 'function') return true
  return provider.getDelegate() !== new api.ProxyTracerProvider().getDelegate()
}

/** Whether an SDK registered a global meter provider (without one, its meters are the API's no-op meter). */
export function globalMetricsRegistered (api: Api): boolean {
  const meter = api.metrics.getMeterProvider().getMeter('fastify-http-services')
  return !(meter instanceof (api.createNoopMeter().constructor as new () => unknown))
}

/** @internal For tests: forget the cached API, so the next `loadApi()` resolves it again. */
export function resetApiCache (value?: Api | null): void {
  cached = value
}

/**
 * OpenTelemetry (`telemetry`, a registry option): spans, metrics and trace context for every call, through
 * `@opentelemetry/api` when it is installed (lib/telemetry). The providers are typed structurally, so that this
 * package's types need no `@opentelemetry/api`: pass the SDK's objects.
 */
import { rule } from '../checkers'
import { defineGroup, type Spec } from './group'

/** Explicit OpenTelemetry providers, used instead of the global ones (`telemetry` option). */
export interface TelemetryOptions {
  /**
   * The tracer provider spans are made with (an `@opentelemetry/api` `TracerProvider`, e.g. the SDK's
   * `BasicTracerProvider`).
   * @default the global tracer provider, when an SDK registered one
   */
  tracerProvider?: { getTracer: (name: string, version?: string) => unknown }
  /**
   * The meter provider metrics are recorded with (an `@opentelemetry/api` `MeterProvider`).
   * @default the global meter provider, when an SDK registered one
   */
  meterProvider?: { getMeter: (name: string, version?: string) => unknown }
  /**
   * The propagator that writes the trace context into outbound headers (an `@opentelemetry/api` `TextMapPropagator`,
   * e.g. `W3CTraceContextPropagator` of `@opentelemetry/core`).
   * @default the global propagator (W3C `traceparent` once an SDK is set up)
   */
  propagator?: { inject: (...args: never[]) => unknown, fields: () => string[] }
}

const method = (name: string, expected: string) => rule(expected,
  (v) => typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[name] === 'function')

export const telemetryOptions = defineGroup({
  tracerProvider: { check: method('getTracer', 'a TracerProvider (an object with a getTracer function)'), default: undefined },
  meterProvider: { check: method('getMeter', 'a MeterProvider (an object with a getMeter function)'), default: undefined },
  propagator: { check: method('inject', 'a TextMapPropagator (an object with an inject function)'), default: undefined }
} satisfies Spec<TelemetryOptions>)

/** Telemetry after resolution: the explicit providers, or `undefined` when `telemetry: false`. */
export type ResolvedTelemetry = TelemetryOptions | undefined

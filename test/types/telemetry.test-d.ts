import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import Fastify from 'fastify'
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import httpServices, { createHttpServices, isHttpServicesRequest, type HttpServicesOptions, type TelemetryOptions } from '../../index'

// `telemetry`: on by default, `false` turns it off, or the SDK's own objects as providers.
expectAssignable<HttpServicesOptions>({ telemetry: true })
expectAssignable<HttpServicesOptions>({ telemetry: false })
expectAssignable<TelemetryOptions>({
  tracerProvider: new BasicTracerProvider(),
  meterProvider: new MeterProvider(),
  propagator: new W3CTraceContextPropagator()
})
expectNotAssignable<TelemetryOptions>({ tracerProvider: {} })
expectNotAssignable<HttpServicesOptions>({ telemetry: 'on' })
expectError(createHttpServices({ services: {}, telemetry: { exporter: {} } }))

const app = Fastify()
app.register(httpServices, { services: {}, telemetry: { tracerProvider: new BasicTracerProvider() } })

// instrumentation-undici's `ignoreRequestHook` takes an undici request.
expectType<boolean>(isHttpServicesRequest({ headers: ['traceparent', 'x'] }))

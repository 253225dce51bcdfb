/**
 * The telemetry rows of the throughput table: the library with `@opentelemetry/api` installed and no SDK (what every
 * user without tracing runs), with an SDK whose exporters drop everything (what tracing itself costs here), and raw
 * undici with @opentelemetry/instrumentation-undici (the common alternative; Node >= 22.15). What a row sets up
 * globally (context manager, providers, instrumentation) is set around its own measuring only.
 */
import { Pool } from 'undici'
import type { BenchClient, ClientFactory } from './clients'
import { createHttpServices } from './lib'

const connections = 64

/** The API is loadable, and no SDK is registered: `telemetry` is on by default and finds nothing to record to. */
export const apiNoSdk: ClientFactory = async (origin) => {
  require('@opentelemetry/api')
  const services = createHttpServices({ services: { up: { baseUrl: origin, connections } } })
  await services.open()
  const client = services.client('up')
  return { call: () => client.getJson('/'), close: async () => { await services.close() } }
}

/** An SDK as an app sets one up: batched spans, periodic metrics, both exported nowhere. */
async function noopSdk () {
  const api = await import('@opentelemetry/api')
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks')
  const { W3CTraceContextPropagator } = await import('@opentelemetry/core')
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base')
  const { MeterProvider, PeriodicExportingMetricReader } = await import('@opentelemetry/sdk-metrics')
  const done = (_items: unknown, cb: (result: { code: 0 }) => void): void => { cb({ code: 0 }) }
  const spanExporter = { export: done, shutdown: async () => {} }
  const metricExporter = { export: done, shutdown: async () => {}, forceFlush: async () => {} }
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(spanExporter)] })
  const meterProvider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 })]
  })
  return {
    api,
    tracerProvider,
    meterProvider,
    propagator: new W3CTraceContextPropagator(),
    contextManager: new AsyncLocalStorageContextManager(),
    shutdown: async () => { await tracerProvider.shutdown(); await meterProvider.shutdown() }
  }
}

/** Runs `run` with the SDK's context manager registered, as an app with an SDK has it. */
async function withContext<T> (sdk: Awaited<ReturnType<typeof noopSdk>>, run: () => Promise<T>): Promise<T> {
  sdk.api.context.setGlobalContextManager(sdk.contextManager.enable())
  try {
    return await run()
  } finally {
    sdk.api.context.disable()
  }
}

/**
 * The library with explicit providers of a no-op SDK: a span per request, the metrics, `traceparent` injected.
 *
 * Its registry is opened around its own measuring only, and closed after: a registry with telemetry subscribes the
 * diagnostics channels for the whole process while it is open (`lib/telemetry`), and every other row would then be
 * measured publishing to it (until 2026-12-05 they were: every library row of the table paid for this one's spans).
 */
export const withSdk: ClientFactory = async (origin) => {
  const sdk = await noopSdk()
  const { tracerProvider, meterProvider, propagator } = sdk
  let client: ReturnType<ReturnType<typeof createHttpServices>['client']> | undefined
  return {
    call: () => (client as NonNullable<typeof client>).getJson('/'),
    close: async () => { await sdk.shutdown() },
    measuring: async (run) => await withContext(sdk, async () => {
      const services = createHttpServices({ services: { up: { baseUrl: origin, connections } }, telemetry: { tracerProvider, meterProvider, propagator } })
      await services.open()
      client = services.client('up')
      try {
        // Its connections, opened anew each time: made before the clock starts.
        await Promise.all(Array.from({ length: connections }, async () => await client?.getJson('/')))
        return await run()
      } finally {
        client = undefined
        await services.close()
      }
    })
  }
}

/** Node >= 22.15: what @opentelemetry/instrumentation-undici needs. */
export function undiciInstrumentable (): boolean {
  const [major, minor] = process.versions.node.split('.').map(Number)
  return major > 22 || (major === 22 && minor >= 15)
}

/** Raw undici (`Pool.request` + `body.json()`) traced by instrumentation-undici on the same no-op SDK. */
export const undiciInstrumented: ClientFactory = async (origin): Promise<BenchClient> => {
  const sdk = await noopSdk()
  const { UndiciInstrumentation } = await import('@opentelemetry/instrumentation-undici')
  // Made enabled (its `enabled: false` config would also make it ignore every request once enabled), then switched
  // off until this row is measured.
  const instrumentation = new UndiciInstrumentation()
  instrumentation.disable()
  instrumentation.setTracerProvider(sdk.tracerProvider)
  instrumentation.setMeterProvider(sdk.meterProvider)
  const pool = new Pool(origin, { connections })
  return {
    call: async () => {
      const { body } = await pool.request({ path: '/', method: 'GET' })
      return await body.json()
    },
    close: async () => { await pool.close(); await sdk.shutdown() },
    measuring: async (run) => await withContext(sdk, async () => {
      sdk.api.propagation.setGlobalPropagator(sdk.propagator)
      instrumentation.enable()
      try {
        return await run()
      } finally {
        instrumentation.disable()
        sdk.api.propagation.disable()
      }
    })
  }
}

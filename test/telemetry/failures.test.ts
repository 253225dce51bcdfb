/**
 * A failure inside telemetry (a user's propagator, tracer or span, a bug of ours) never reaches the diagnostics
 * channel, which would rethrow it as an uncaught exception and end the process after a successful call.
 */
import { diag, DiagLogLevel, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api'
import t, { type Test } from 'tap'
import { createHttpServices, type TelemetryOptions } from '../../index'
import { sendJson, startServer } from '../helpers/server'
import { setupOtel } from '../helpers/otel'

/** Fails the test if an uncaught exception fires while it runs; collects what `api.diag.error` and the logger got. */
function watch (t: Test) {
  const uncaught: unknown[] = []
  const onUncaught = (error: unknown): void => { uncaught.push(error) }
  process.on('uncaughtException', onUncaught)
  const diagErrors: unknown[][] = []
  const noop = (): void => {}
  diag.setLogger({ error: (...args: unknown[]) => { diagErrors.push(args) }, warn: noop, info: noop, debug: noop, verbose: noop }, DiagLogLevel.ERROR)
  t.teardown(() => {
    process.removeListener('uncaughtException', onUncaught)
    diag.disable()
  })
  return { uncaught, diagErrors }
}

async function setup (t: Test, telemetry: (otel: ReturnType<typeof setupOtel>) => TelemetryOptions) {
  const otel = setupOtel(t)
  const seen = watch(t)
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const warnings: unknown[] = []
  const log = { warn: (...args: unknown[]) => { warnings.push(args) }, info () {}, debug () {}, error () {}, trace () {}, fatal () {}, child () { return log }, level: 'info' }
  const services = createHttpServices({ services: { users: { baseUrl: server.url } }, telemetry: telemetry(otel), logger: log } as never)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const settle = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 20)) }
  return { otel, server, users: services.client('users'), settle, warnings, ...seen }
}

t.test('a propagator whose inject throws: the calls succeed, the process lives, each span ends, the failure is reported once', async (t) => {
  const { otel, server, users, settle, uncaught, diagErrors } = await setup(t, ({ tracerProvider }) => ({
    tracerProvider, propagator: { inject () { throw new Error('propagator bug') }, extract: (c: unknown) => c, fields: () => [] }
  } as never))
  t.same(await users.getJson('/a'), { ok: true })
  t.same(await users.getJson('/b'), { ok: true })
  await settle()
  t.same(uncaught, [], 'no uncaught exception')
  const spans = otel.spans()
  t.equal(spans.length, 2, 'the spans started are ended')
  t.same(spans.map((s) => s.attributes['http.response.status_code']), [200, 200])
  t.equal(server.requests[0].headers.traceparent, undefined)
  t.equal(diagErrors.length, 1, 'reported once for the registry')
  t.match(String((diagErrors[0][1] as Error).message), 'propagator bug')
})

t.test('a tracer whose startSpan throws: the call succeeds and the process lives', async (t) => {
  const tracer = { startSpan () { throw new Error('tracer bug') } } as unknown as Tracer
  const tracerProvider: TracerProvider = { getTracer: () => tracer }
  const { users, settle, uncaught, diagErrors, warnings } = await setup(t, ({ meterProvider }) => ({ tracerProvider, meterProvider }))
  t.same(await users.getJson('/a'), { ok: true })
  await settle()
  t.same(uncaught, [], 'no uncaught exception')
  t.equal(diagErrors.length, 1)
  t.equal(warnings.length, 1, 'warned once on the registry\'s logger')
})

t.test('a span whose setAttribute throws when the request ends is still ended', async (t) => {
  let ended = 0
  const { users, settle, uncaught } = await setup(t, ({ tracerProvider }) => {
    const real = tracerProvider.getTracer('x')
    const tracer = {
      startSpan (...args: Parameters<Tracer['startSpan']>): Span {
        const span = real.startSpan(...args)
        return new Proxy(span, {
          get (target, key) {
            if (key === 'setAttribute') return () => { throw new Error('span bug') }
            if (key === 'end') return () => { ended++; target.end() }
            const value = Reflect.get(target, key) as unknown
            return typeof value === 'function' ? value.bind(target) : value
          }
        })
      }
    } as unknown as Tracer
    return { tracerProvider: { getTracer: () => tracer } }
  })
  t.same(await users.getJson('/a'), { ok: true })
  await settle()
  t.same(uncaught, [], 'no uncaught exception')
  t.equal(ended, 1)
})

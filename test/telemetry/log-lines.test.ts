import t from 'tap'
import { createHttpServices } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer } from '../helpers/server'
import { setupOtel } from '../helpers/otel'

// Retry, give-up and breaker lines of an unbound client (no Fastify request, a pino logger of its own) carry the active
// span's ids, named as @opentelemetry/instrumentation-pino names them.

t.test('a retry line and a give-up line made under a span carry its trace_id and span_id; one made outside a span none', async (t) => {
  const otel = setupOtel(t)
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const { logger, lines } = capturePino()
  const services = createHttpServices({
    services: { users: { baseUrl: server.url, retry: { attempts: 1, delay: () => 1 }, breaker: false, throwHttpErrors: false } },
    telemetry: { tracerProvider: otel.tracerProvider, propagator: otel.propagator },
    logger
  })
  t.teardown(async () => { await services.close(); await server.close() })
  await services.open()
  const parent = await otel.inSpan('job', async (span) => {
    await (await services.client('users').get('/x')).dump()
    return span.spanContext()
  })
  const warned = lines.filter((l) => l.level === 40)
  t.same(warned.map((l) => String(l.msg).split(' ')[0]), ['retrying', 'giving'])
  for (const line of warned) {
    t.equal(line.trace_id, parent.traceId)
    t.equal(line.span_id, parent.spanId, 'the active span\'s: the caller\'s')
    t.equal(line.trace_flags, '01')
  }
  lines.length = 0
  await (await services.client('users').get('/x')).dump()
  t.ok(lines.length > 0)
  t.notOk(lines.some((l) => 'trace_id' in l), 'no span, no ids')
})

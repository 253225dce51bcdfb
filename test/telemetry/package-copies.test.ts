import t from 'tap'
import { createHttpServices } from '../../index'
import { retainTelemetry } from '../../lib/telemetry/index'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer } from '../helpers/server'
import { setupOtel } from '../helpers/otel'

// Two copies of the package in one process share the log lines (through globalThis) but each has its own registries:
// one copy's last registry closing must not take the trace fields away from the other copy's lines.

/** A second copy of the telemetry module and of the log subscriber it sets the trace fields of. */
function secondCopy (): typeof import('../../lib/telemetry/index') {
  const ids = [require.resolve('../../lib/telemetry/index'), require.resolve('../../lib/diagnostics/log-subscriber')]
  const saved = ids.map((id) => require.cache[id])
  for (const id of ids) delete require.cache[id]
  try {
    return require('../../lib/telemetry/index') as typeof import('../../lib/telemetry/index')
  } finally {
    ids.forEach((id, i) => { require.cache[id] = saved[i] })
  }
}

t.test('another copy\'s registry opening and closing with telemetry on leaves this copy\'s lines their trace fields', async (t) => {
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

  const other = secondCopy()
  t.not(other.retainTelemetry, retainTelemetry, 'a copy of its own')
  const release = other.retainTelemetry({ registry: {}, stats: () => ({}), protocols: new Map() }, { tracerProvider: otel.tracerProvider })
  t.type(release, 'function')
  release?.()

  const parent = await otel.inSpan('job', async (span) => {
    await (await services.client('users').get('/x')).dump()
    return span.spanContext()
  })
  const warned = lines.filter((l) => l.level === 40)
  t.ok(warned.length > 0)
  for (const line of warned) {
    t.equal(line.trace_id, parent.traceId, 'still traced after the other copy let go')
    t.equal(line.span_id, parent.spanId)
  }
})

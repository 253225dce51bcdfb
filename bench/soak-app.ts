/**
 * The soak's app, in its own process (run with --expose-gc): a Fastify app with this plugin and two routes that
 * call the faulty upstream through `request.httpClient`, every policy on. argv[2] is `{ port, flakyPort }` of the
 * upstream as JSON, argv[3] the attempt timeout in ms. It tells the harness over IPC:
 *   { type: 'ready', port, expected }                  once listening (expected: error codes each route may produce)
 *   { type: 'baseline', resources }                    in reply to { cmd: 'baseline' }, before any traffic
 *   (nothing)                                          on { cmd: 'start', intervalMs }: samples begin, counters reset
 *   { type: 'sample', … }                              every intervalMs: memory, handles, sockets, errors by code
 *   { type: 'fatal', kind, message }                   on an uncaught exception or unhandled rejection
 *   { type: 'settled', resources, waitedMs, stats, … } in reply to { cmd: 'settle', graceMs, slack }
 */
import Fastify, { type FastifyError } from 'fastify'
import type { AddressInfo } from 'node:net'
import httpServices, { CircuitOpenError, type HttpServicesError } from './lib'
import type { HttpServicesOptions } from './lib'

/** What a process holds open, by type (`process.getActiveResourcesInfo()`), and its TCP sockets. */
export interface Resources {
  total: number
  byType: Record<string, number>
  /** TCPSocketWrap handles: inbound (the harness) and outbound (the pools) connections. */
  sockets: number
  /** Connections the services' pools hold (`httpServices.stats()` pool counters). */
  poolConnected: number
}

/** One sample of the app, sent every interval while the load runs. */
export interface AppSample {
  type: 'sample'
  /** Milliseconds since the load started. */
  t: number
  /** Responses sent since the previous sample, and over how many ms. */
  served: number
  intervalMs: number
  /** Live heap after a full GC, RSS and external memory, in bytes. */
  heapUsed: number
  rss: number
  external: number
  resources: Resources
  /** Route errors since the previous sample, by `route code`. */
  errors: Record<string, number>
  /** Fallbacks served since the previous sample, by `service code`. */
  fallbacks: Record<string, number>
  /** Breaker state of each service (`closed`, `open`, `halfOpen`). */
  breakers: Record<string, string>
}

const upstream = JSON.parse(process.argv[2]) as { port: number, flakyPort: number }
const attemptTimeout = Number(process.argv[3])

/**
 * The error codes each route may answer with, given the configuration below; anything else is a defect.
 * - catalog's fallback serves only an open breaker, so CIRCUIT_OPEN never surfaces. What outlasts two retries
 *   surfaces: STATUS (an outage's 503s before the breaker opens, a Retry-After wait that would pass the deadline, an
 *   exhausted retry budget), CONNECTION (resets, mid-body ones included, which cannot be retried) and TIMEOUT
 *   (attempt, total or bulkhead queue); a full bulkhead is BULKHEAD_REJECTED.
 * - inventory's fallback serves every failure of the pipeline, so only what happens after it, while `getJson`
 *   reads the body (a reset mid-body, a slow body past the attempt or total timeout), may surface.
 * RATE_LIMITED (the limit is far above the load), ABORTED (the harness never gives up on a request),
 * CLIENT_CLOSED, parse errors, codeless errors and Fastify's own are all unexpected.
 */
const expected: Record<string, string[]> = {
  '/catalog': ['HTTP_SERVICES_ERR_STATUS', 'HTTP_SERVICES_ERR_TIMEOUT', 'HTTP_SERVICES_ERR_CONNECTION', 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED'],
  '/inventory': ['HTTP_SERVICES_ERR_TIMEOUT', 'HTTP_SERVICES_ERR_CONNECTION']
}

let served = 0
let errors: Record<string, number> = {}
let fallbacks: Record<string, number> = {}
const bump = (m: Record<string, number>, key: string): void => { m[key] = (m[key] ?? 0) + 1 }

function fallbackKey (service: string, err: HttpServicesError): string {
  const errno = (err as { errno?: string }).errno
  return `${service} ${err.code}${errno !== undefined ? `/${errno}` : ''}`
}

const common = {
  // Idle sockets close within about a second, so the handle check after the load needs only a short grace.
  keepAliveTimeout: 1000,
  keepAliveMaxTimeout: 1000,
  connections: 16,
  timeout: { connect: 500, attempt: attemptTimeout, total: attemptTimeout * 4 },
  retry: { attempts: 2, baseDelay: 50, maxDelay: 400 },
  breaker: { errorPercentage: 50, minimumRequests: 20, window: 3000, windowBuckets: 10, resetAfter: 1500 },
  bulkhead: { maxConcurrent: 8, maxQueue: 4, queueTimeout: 300 },
  rateLimit: { rate: 100_000, interval: 1000 }
}

const options: HttpServicesOptions = {
  requestDeadline: attemptTimeout * 6,
  services: {
    catalog: {
      ...common,
      baseUrl: `http://127.0.0.1:${upstream.port}`,
      fallback: (err) => {
        if (!(err instanceof CircuitOpenError)) throw err
        bump(fallbacks, fallbackKey('catalog', err))
        return { id: 0, stale: true }
      }
    },
    inventory: {
      ...common,
      baseUrl: `http://127.0.0.1:${upstream.flakyPort}`,
      fallback: (err) => {
        bump(fallbacks, fallbackKey('inventory', err))
        return { stock: 0, stale: true }
      }
    }
  }
}

const fatals: Array<{ kind: string, message: string }> = []
function fatal (kind: string, err: unknown): void {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err)
  fatals.push({ kind, message })
  process.send?.({ type: 'fatal', kind, message })
}
// Recorded and reported rather than crashing, so the harness can still print everything it saw.
process.on('uncaughtException', (err) => fatal('uncaughtException', err))
process.on('unhandledRejection', (err) => fatal('unhandledRejection', err))

async function main (): Promise<void> {
  const app = Fastify({ logger: false })
  await app.register(httpServices, options)
  app.get('/catalog', async (request) => await request.httpClient('catalog').getJson('/item'))
  app.get('/inventory', async (request) => await request.httpClient('inventory').getJson('/stock'))
  app.setErrorHandler((err: FastifyError, request, reply) => {
    bump(errors, `${request.routeOptions.url ?? request.url} ${err.code ?? err.name}`)
    void reply.code(err.statusCode ?? 500).send({ code: err.code })
  })
  app.addHook('onResponse', (_request, _reply, done) => { served++; done() })
  await app.listen({ port: 0, host: '127.0.0.1' })

  const resources = (): Resources => {
    const byType: Record<string, number> = {}
    const info = process.getActiveResourcesInfo()
    for (const type of info) bump(byType, type)
    let poolConnected = 0
    for (const s of Object.values(app.httpServices.stats())) poolConnected += s.pool?.connected ?? 0
    return { total: info.length, byType, sockets: byType.TCPSocketWrap ?? 0, poolConnected }
  }
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('soak-app needs --expose-gc')

  let sampler: NodeJS.Timeout | undefined
  let baseline = resources()
  let started = 0
  let last = 0
  const sample = (): AppSample => {
    // A full GC first: the heap figure is then what is live, without the young generation's sawtooth.
    gc()
    const mem = process.memoryUsage()
    const now = performance.now()
    const breakers: Record<string, string> = {}
    for (const [name, s] of Object.entries(app.httpServices.stats())) breakers[name] = (s.breaker as { state?: string } | undefined)?.state ?? '-'
    const out: AppSample = {
      type: 'sample',
      t: Math.round(now - started),
      served,
      intervalMs: now - last,
      heapUsed: mem.heapUsed,
      rss: mem.rss,
      external: mem.external,
      resources: resources(),
      errors,
      fallbacks,
      breakers
    }
    served = 0
    errors = {}
    fallbacks = {}
    last = now
    return out
  }

  const totals = { errors: {} as Record<string, number>, fallbacks: {} as Record<string, number> }
  const send = (s: AppSample): void => {
    for (const [k, v] of Object.entries(s.errors)) totals.errors[k] = (totals.errors[k] ?? 0) + v
    for (const [k, v] of Object.entries(s.fallbacks)) totals.fallbacks[k] = (totals.fallbacks[k] ?? 0) + v
    process.send?.(s)
  }

  process.on('message', (msg: { cmd: string, intervalMs?: number, graceMs?: number, slack?: number }) => {
    if (msg.cmd === 'baseline') {
      gc()
      // Start-up leaves a few short-lived requests (file reads of the loader) behind: wait until the count holds.
      const steady = (previous: number, tries: number): void => {
        const r = resources()
        if (r.total !== previous && tries > 0) {
          setTimeout(steady, 100, r.total, tries - 1).unref()
          return
        }
        baseline = r
        process.send?.({ type: 'baseline', resources: baseline })
      }
      steady(-1, 20)
    } else if (msg.cmd === 'start') {
      // The soak's own timers are unref'd: getActiveResourcesInfo() lists only ref'd ones, so they never count.
      sampler = setInterval(() => send(sample()), msg.intervalMs).unref()
      started = last = performance.now()
      // Warm-up answers do not count as throughput; its errors stay, to be judged with the rest.
      served = 0
    } else if (msg.cmd === 'settle') {
      clearInterval(sampler)
      send(sample())
      settle(msg.graceMs ?? 10_000, msg.slack ?? 0)
    }
  })

  /** Waits, after the load, until the handles are back to the baseline (or the grace ends), then reports. */
  const settle = (graceMs: number, slack: number): void => {
    const t0 = performance.now()
    const poll = (): void => {
      const r = resources()
      const waited = performance.now() - t0
      const back = r.total <= baseline.total + slack && r.sockets <= baseline.sockets && r.poolConnected === 0
      if (!back && waited < graceMs) {
        setTimeout(poll, 200).unref()
        return
      }
      process.send?.({ type: 'settled', resources: r, waitedMs: Math.round(waited), stats: app.httpServices.stats(), totals, fatals })
    }
    poll()
  }

  process.on('disconnect', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  process.send?.({ type: 'ready', port: (app.server.address() as AddressInfo).port, expected })
}

main().catch((err) => { console.error(err); process.exit(1) })

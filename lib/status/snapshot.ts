/**
 * The status page's data, as `{path}.json` and each server-sent event carry it: per service, the instantaneous state
 * from `stats()` (breakers, bulkhead, rate limiter, pool) beside the last minute from the aggregator's window. Only
 * names, origins (never with credentials: `baseUrl` refuses them) and numbers: no path, query, header or option value.
 */
import type { BreakerState } from '../pipeline/types'
import type { ServiceStats } from '../service'
import type { StatusAggregator } from './aggregator'
import { Counter } from './rolling-window'

/** One upstream's circuit breaker. */
export interface UpstreamBreakerStatus {
  origin: string
  state: BreakerState
  /** Milliseconds until an open breaker lets a probe through; 0 otherwise. */
  retryAfterMs: number
}

/** One service on the status page. */
export interface ServiceStatus {
  name: string
  /** `created` (not open yet), `open`, `closing`, `closed`. */
  lifecycle: ServiceStats['lifecycle']
  /** The upstreams' origins. */
  origins: string[]
  /**
   * The circuit breaker; `null` when the service has none (`breaker: false`). With several `baseUrl`s, `state` is
   * `open` only when every upstream's is, and `upstreams` has each.
   */
  breaker: { state: BreakerState, retryAfterMs: number, upstreams: UpstreamBreakerStatus[] } | null
  /** Calls per second over the window. */
  requestsPerSecond: number
  /** Failed calls / calls over the window (0 without calls). */
  errorRate: number
  /** Latency of calls over the window, ms (retries and waits included); `null` without calls. */
  latency: { p50: number | null, p99: number | null }
  /** Calls, failed calls, retries sent, retries the retry budget refused, hedges sent and fallbacks served, over the window. */
  calls: number
  errors: number
  retries: number
  retriesRefused: number
  hedges: number
  fallbacks: number
  /** Calls holding a bulkhead slot and waiting for one, now; `null` without a bulkhead. */
  bulkhead: { active: number, queued: number, maxConcurrent: number, maxQueue: number } | null
  /** Permits that may be taken now, of `capacity`; `null` without a rate limit. */
  rateLimit: { available: number, capacity: number } | null
  /** undici's connections to the upstreams now: open, idle, and requests waiting for one; `null` before any pool exists. */
  pool: { connected: number, free: number, pending: number } | null
  /** Cache answers over the window (`hit`, `revalidated` and `stale` count as hits); `null` without `cache`. */
  cache: { hits: number, lookups: number, hitRatio: number | null } | null
  /** Per second over the window, oldest first (60 values): calls, failed calls, p99 latency (ms). */
  series: { requests: number[], errors: number[], p99: number[] }
}

/** What `{path}.json` answers and each event of `{path}/events` carries. */
export interface StatusSnapshot {
  /** When it was taken (ISO 8601). */
  time: string
  /** Seconds the window figures cover: 60, or less just after the page started watching. */
  windowSeconds: number
  services: ServiceStatus[]
}

const round = (n: number, digits = 2): number => Math.round(n * 10 ** digits) / 10 ** digits
const num = (v: unknown): number => typeof v === 'number' && Number.isFinite(v) ? v : 0
const isState = (v: unknown): v is BreakerState => v === 'closed' || v === 'open' || v === 'halfOpen'

function breakerOf (stats: ServiceStats): ServiceStatus['breaker'] {
  const b = stats.breaker as { state?: unknown, retryAfterMs?: unknown, upstreams?: Record<string, { state?: unknown, retryAfterMs?: unknown }> } | undefined
  if (b === undefined || !isState(b.state)) return null
  const upstreams: UpstreamBreakerStatus[] = []
  for (const [origin, u] of Object.entries(b.upstreams ?? {})) {
    if (isState(u.state)) upstreams.push({ origin, state: u.state, retryAfterMs: num(u.retryAfterMs) })
  }
  return { state: b.state, retryAfterMs: num(b.retryAfterMs), upstreams }
}

function serviceStatus (stats: ServiceStats, aggregator: StatusAggregator, now: number): ServiceStatus {
  const summary = aggregator.window(stats.name)?.summary(now)
  const counts = summary?.counts ?? new Array<number>(8).fill(0)
  const seconds = summary?.seconds ?? 1
  const calls = counts[Counter.Calls]
  const bulkhead = stats.bulkhead as Record<string, unknown> | undefined
  const rateLimit = stats.rateLimit as Record<string, unknown> | undefined
  const pool = stats.pool
  const lookups = counts[Counter.CacheLookups]
  return {
    name: stats.name,
    lifecycle: stats.lifecycle,
    origins: [...stats.origins],
    breaker: breakerOf(stats),
    requestsPerSecond: round(calls / seconds),
    errorRate: calls === 0 ? 0 : round(counts[Counter.Errors] / calls, 4),
    latency: {
      p50: summary?.p50 == null ? null : round(summary.p50),
      p99: summary?.p99 == null ? null : round(summary.p99)
    },
    calls,
    errors: counts[Counter.Errors],
    retries: counts[Counter.Retries],
    retriesRefused: counts[Counter.BudgetRefused],
    hedges: counts[Counter.Hedges],
    fallbacks: counts[Counter.Fallbacks],
    bulkhead: bulkhead === undefined
      ? null
      : { active: num(bulkhead.active), queued: num(bulkhead.queued), maxConcurrent: num(bulkhead.maxConcurrent), maxQueue: num(bulkhead.maxQueue) },
    rateLimit: rateLimit === undefined
      ? null
      : { available: Math.floor(num(rateLimit.available)), capacity: num(rateLimit.burst ?? rateLimit.limit ?? rateLimit.rate) },
    pool: pool === undefined ? null : { connected: num(pool.connected), free: num(pool.free), pending: num(pool.pending) },
    cache: stats.cache === undefined
      ? null
      : { hits: counts[Counter.CacheHits], lookups, hitRatio: lookups === 0 ? null : round(counts[Counter.CacheHits] / lookups, 4) },
    series: summary?.series ?? { requests: [], errors: [], p99: [] }
  }
}

/** The snapshot of `stats` (the registry's `stats()`) with the aggregator's windows, as of its clock's `now`. */
export function buildSnapshot (stats: Record<string, ServiceStats>, aggregator: StatusAggregator, now: number): StatusSnapshot {
  const services = Object.values(stats).map((s) => serviceStatus(s, aggregator, now))
  return {
    time: new Date().toISOString(),
    windowSeconds: round(aggregator.windowSeconds(now), 1),
    services
  }
}

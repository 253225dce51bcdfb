/**
 * Metrics of the HTTP client semantic conventions (`http.client.request.duration`, `http.client.active_requests`,
 * `http.client.open_connections`) and the library's own counters of what its policies did, on the registry's meter.
 * Pool figures are read from undici's pool stats (`HttpServices.stats()`) when the SDK collects, not per call.
 */
import type {
  Attributes, BatchObservableCallback, Counter, Histogram, Meter, ObservableUpDownCounter, UpDownCounter
} from '@opentelemetry/api'
import type { ServiceStats } from '../service'
import { kServiceAttribute, originParts } from './attributes'

/** The conventions' advice for `http.client.request.duration`, in seconds. */
export const kDurationBuckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

/** The instruments of one registry. */
export interface Instruments {
  readonly duration: Histogram
  readonly active: UpDownCounter
  readonly retries: Counter
  readonly retriesRefused: Counter
  readonly hedges: Counter
  readonly breakerChanges: Counter
  readonly bulkheadRejections: Counter
  readonly rateLimitRejections: Counter
  readonly fallbacks: Counter
  /** Removes the pool figures' callback from the meter (the registry closes). */
  readonly stop: () => void
}

/** Makes the instruments on `meter`; the pool figures come from `stats`, read on each collection. */
export function createInstruments (meter: Meter, stats: () => Record<string, ServiceStats>): Instruments {
  const counter = (name: string, unit: string, description: string): Counter => meter.createCounter(name, { unit, description })
  const openConnections = meter.createObservableUpDownCounter('http.client.open_connections', {
    unit: '{connection}', description: 'Connections of the service\'s pool, by state (active or idle)'
  })
  const queued = meter.createObservableUpDownCounter('http_services.client.queued_requests', {
    unit: '{request}', description: 'Requests waiting in the service\'s pool for a connection'
  })
  const observe: BatchObservableCallback = (result) => {
    for (const [service, s] of Object.entries(stats())) observePools(result, openConnections, queued, service, s)
  }
  meter.addBatchObservableCallback(observe, [openConnections, queued])
  return {
    duration: meter.createHistogram('http.client.request.duration', {
      unit: 's', description: 'Duration of HTTP client requests', advice: { explicitBucketBoundaries: kDurationBuckets }
    }),
    active: meter.createUpDownCounter('http.client.active_requests', { unit: '{request}', description: 'Number of active HTTP requests' }),
    retries: counter('http_services.client.retries', '{retry}', 'Retries the retry policy scheduled'),
    retriesRefused: counter('http_services.client.retries_refused', '{retry}', 'Retries the retry budget refused'),
    hedges: counter('http_services.client.hedges', '{request}', 'Hedged requests sent'),
    breakerChanges: counter('http_services.client.breaker_state_changes', '{change}', 'Circuit breaker state changes, by new state'),
    bulkheadRejections: counter('http_services.client.bulkhead_rejections', '{call}', 'Calls the bulkhead refused, by reason'),
    rateLimitRejections: counter('http_services.client.rate_limit_rejections', '{call}', 'Calls the rate limiter refused'),
    fallbacks: counter('http_services.client.fallbacks', '{call}', 'Failed calls answered by their fallback'),
    stop: () => { meter.removeBatchObservableCallback(observe, [openConnections, queued]) }
  }
}

type ObservableResult = Parameters<BatchObservableCallback>[0]

/** One service's pool figures: per upstream when it keeps a pool per upstream, else for its pool. */
function observePools (
  result: ObservableResult, openConnections: ObservableUpDownCounter, queued: ObservableUpDownCounter, service: string, s: ServiceStats
): void {
  const pools = (s.pools as Record<string, Record<string, number>> | undefined) ?? (s.pool === undefined ? {} : { '': s.pool })
  for (const [origin, p] of Object.entries(pools)) {
    const base: Attributes = { [kServiceAttribute]: service }
    const parts = origin === '' ? undefined : originParts(origin)
    if (parts !== undefined) {
      base['server.address'] = parts.address
      base['server.port'] = parts.port
    }
    const connected = p.connected ?? 0
    const free = p.free ?? 0
    result.observe(openConnections, connected - free, { ...base, 'http.connection.state': 'active' })
    result.observe(openConnections, free, { ...base, 'http.connection.state': 'idle' })
    result.observe(queued, (p.pending ?? 0) + (p.queued ?? 0), base)
  }
}

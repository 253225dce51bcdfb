import { breakerUpstreams } from '../upstream-origins'
import { ServiceBreaker } from './service-breaker'
import { kBreakerView, type BreakerView, type Policy, type PolicySteps, type PolicyFactory, type ServiceRuntime } from './types'
import { UpstreamBreakers } from './upstreams'

export type { BreakerState } from './types'
export type { BreakerStats } from './service-breaker'

/**
 * What a service's breaker policy is: one breaker, or one per upstream. As a `BreakerView` (`state`, `open` only when
 * no call can get through, with several upstreams when all of them are open; `retryAfterMs`), it is what the rest
 * of the service reads of it.
 */
export interface Breakers extends BreakerView {
  readonly policy: Policy | PolicySteps
  stats: () => unknown
  shutdown: () => void
  reset: () => void
  /**
   * Opens the breaker of `upstream` (the service's own when it has one breaker: `undefined`) if it is closed, because
   * another instance saw an outage (`breaker.shared`); `reason` goes to the log line. `false` when nothing opened.
   */
  trip: (upstream: string | undefined, reason: string) => boolean
}

/** The breaker(s) of a service, when it has any. */
export function breakerOf (service: ServiceRuntime): Breakers | undefined {
  return service.sharedIf<Breakers>(kBreakerView)
}

/**
 * Circuit breaker (opossum), on by default, one per service, inside retry so it sees every attempt. Counts 5xx, 408
 * and 429 responses, timeouts and connection and TLS failures; not 4xx or the caller's aborts. Open: calls fail at
 * once with `CircuitOpenError` (503, `Retry-After` = seconds until half-open) and never reach the upstream; after
 * `resetAfter` probes pass one at a time, and `closeAfter` successes in a row close the breaker (see
 * `./service-breaker`).
 *
 * With several `baseUrl`s there is one breaker per upstream, and this policy picks the upstream of each attempt
 * (see `./upstreams`): the service's dispatcher is then an Agent that is told the origin, not a BalancedPool.
 */
export const breaker: PolicyFactory = (service) => {
  if (service.options.breaker === undefined) return undefined
  return service.shared(kBreakerView, (): Breakers => {
    const origins = breakerUpstreams(service.options)
    const created: Breakers = origins === undefined
      ? new ServiceBreaker(service)
      : new UpstreamBreakers(origins.map((origin) => new ServiceBreaker(service, origin)))
    service.addStats('breaker', () => created.stats())
    service.onClose?.(() => created.shutdown())
    service.onReset?.(() => created.reset())
    return created
  }).policy
}

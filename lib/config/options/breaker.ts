import { boolean, integer, number } from '../checkers'
import { positiveMs } from '../values'
import { defineGroup, enabled, type Spec } from './group'

/**
 * Circuit breaker (opossum), on by default: one per service, or with a list of `baseUrl`s one per upstream (the
 * service then picks the upstream of each attempt itself, skipping those whose breaker is open). Failures are 5xx, 408
 * and 429 answers, timeouts and connection or TLS failures; `false` turns it off.
 */
export interface BreakerOptions {
  /**
   * Percentage of failed calls in the window above which the breaker opens.
   * @default 50
   */
  errorPercentage?: number
  /**
   * Calls needed in the window before the breaker may open.
   * @default 20
   */
  minimumRequests?: number
  /**
   * Length of the rolling window in milliseconds.
   * @default 10000
   */
  window?: number
  /**
   * Buckets of the rolling window.
   * @default 10
   */
  windowBuckets?: number
  /**
   * Time the breaker stays open before it lets probes through, one at a time (half-open), in milliseconds.
   * @default 30000
   */
  resetAfter?: number
  /**
   * Successful probes in a row that close a half-open breaker; one failed probe re-opens it. Probes go one at a time.
   * @default 1
   */
  closeAfter?: number
  /**
   * Share openings with every instance of the app on the registry's Redis (needs the `redis` option): a breaker that
   * opens here opens the same service's (or upstream's) breaker in the others, which then probe on their own. Each
   * instance still counts its own calls; with Redis away, breakers are local.
   * @default false
   */
  shared?: boolean
}

export const breakerOptions = defineGroup({
  errorPercentage: { check: number('a number between 1 and 100', (n) => n >= 1 && n <= 100), default: 50 },
  minimumRequests: { check: integer(1), default: 20 },
  window: { check: positiveMs, default: 10000 },
  windowBuckets: { check: integer(1), default: 10 },
  resetAfter: { check: positiveMs, default: 30000 },
  closeAfter: { check: integer(1), default: 1 },
  shared: { check: boolean, default: false }
} satisfies Spec<BreakerOptions>)

/** A breaker after resolution; a service without one has `undefined`. `shared` only when on. */
export type ResolvedBreaker = Required<Omit<BreakerOptions, 'shared'>> & { shared?: true }

/** A service's breaker (`true` or `undefined` mean the defaults), `undefined` when off. */
export function resolveBreaker (value: boolean | BreakerOptions | undefined): ResolvedBreaker | undefined {
  const on = enabled(value, breakerOptions.defaults)
  if (on === undefined) return undefined
  const { shared, ...rest } = on as Required<BreakerOptions>
  return shared ? { ...rest, shared } : rest
}

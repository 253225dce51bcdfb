import { integer, number } from '../checkers'
import { positiveMs } from '../values'
import { defineGroup, type Spec } from './group'

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
}

export const breakerOptions = defineGroup({
  errorPercentage: { check: number('a number between 1 and 100', (n) => n >= 1 && n <= 100), default: 50 },
  minimumRequests: { check: integer(1), default: 20 },
  window: { check: positiveMs, default: 10000 },
  windowBuckets: { check: integer(1), default: 10 },
  resetAfter: { check: positiveMs, default: 30000 },
  closeAfter: { check: integer(1), default: 1 }
} satisfies Spec<BreakerOptions>)

/** A breaker after resolution; a service without one has `undefined`. */
export type ResolvedBreaker = Required<BreakerOptions>

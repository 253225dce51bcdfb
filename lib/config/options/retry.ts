import { arrayOf, boolean, falseOr, integer, number, oneOf } from '../checkers'
import { fn, headerName, ms } from '../values'
import { defineGroup, definedOnly, enabled, type Spec } from './group'
import { retryBudgetOptions, type ResolvedRetryBudget, type RetryBudgetOptions } from './retry-budget'

/** Retry with exponential backoff (see the README "Resilience" section). */
export interface RetryOptions {
  /**
   * Retries after the first try. `0` disables retries.
   * @default 3
   */
  attempts?: number
  /**
   * First backoff delay in milliseconds.
   * @default 500
   */
  baseDelay?: number
  /**
   * Largest backoff delay in milliseconds.
   * @default 30000
   */
  maxDelay?: number
  /**
   * Growth factor of the backoff.
   * @default 2
   */
  factor?: number
  /**
   * Jitter: `'full'` (random between 0 and the delay, AWS "full jitter"), `'equal'` (half fixed, half random) or `'none'`.
   * @default 'full'
   */
  jitter?: 'full' | 'equal' | 'none'
  /**
   * Computes the delay of retry number `attempt` (1-based) after `error` (the error thrown, or the `HttpResponse`
   * whose status is retried); overrides the backoff. A `Retry-After` from the upstream still wins.
   */
  delay?: (attempt: number, error: unknown) => number
  /**
   * Response statuses that are retried.
   * @default [408, 429, 500, 502, 503, 504]
   */
  statusCodes?: number[]
  /**
   * Methods that are retried whatever the failure. POST and PATCH are retried only when the request was never
   * sent or carries an `Idempotency-Key`.
   * @default ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']
   */
  methods?: string[]
  /**
   * Longest `Retry-After` / `X-RateLimit-Reset` wait that is slept, in milliseconds; longer waits fail at once.
   * @default 60000
   */
  maxRetryAfter?: number
  /**
   * Generate an `Idempotency-Key` header per logical call (the same on every attempt) so POST/PATCH may be retried.
   * @default false
   */
  idempotencyKey?: boolean
  /**
   * Retry budget: retries (and hedged attempts) may add at most `ratio` of the service's recent request rate, with a
   * floor of `minPerSecond`; past it a failure is returned as it is. `false` turns it off. Per call, `ratio` and
   * `minPerSecond` apply to the service's window and `false` skips the budget.
   * @default { ratio: 0.2, minPerSecond: 3, window: 10000 }
   */
  budget?: false | RetryBudgetOptions
}

export const retryOptions = defineGroup({
  attempts: { check: integer(0), default: 3 },
  baseDelay: { check: ms, default: 500 },
  maxDelay: { check: ms, default: 30000 },
  factor: { check: number('a number >= 1', (n) => n >= 1), default: 2 },
  jitter: { check: oneOf('full', 'equal', 'none'), default: 'full' },
  delay: { check: fn, default: undefined },
  statusCodes: { check: arrayOf(integer(100, 599), 'an array of status codes (integers between 100 and 599)'), default: [408, 429, 500, 502, 503, 504] },
  methods: { check: arrayOf(headerName, 'an array of HTTP methods'), default: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'] },
  maxRetryAfter: { check: ms, default: 60000 },
  idempotencyKey: { check: boolean, default: false },
  // On by default: `{}` takes the budget's own defaults.
  budget: { check: falseOr(retryBudgetOptions.check), default: {} }
} satisfies Spec<RetryOptions>)

/** Retry options after resolution. */
export interface ResolvedRetry extends Omit<Required<RetryOptions>, 'delay' | 'budget'> {
  delay: RetryOptions['delay']
  /** Undefined when the budget is off. */
  budget: ResolvedRetryBudget | undefined
}

const { budget: kBudget, ...kRetryDefaults } = retryOptions.defaults

/** The built-in retry options, resolved: what a service without its own `retry` gives a call that asks for retries. */
const kDefaultRetry: ResolvedRetry = Object.freeze({
  ...kRetryDefaults,
  delay: undefined,
  budget: Object.freeze(enabled(kBudget, retryBudgetOptions.defaults))
})

/**
 * `retry` options over `base`: the built-in defaults for a service, the service's resolved options for a call's own
 * `retry`. A number is `attempts`; `false` and 0 attempts turn retries off (`undefined`). `budget` merges over the
 * base's (`false` turns it off). The one place retry options are merged and their defaults applied.
 */
export function resolveRetry (retry: number | false | RetryOptions | undefined, base: ResolvedRetry = kDefaultRetry): ResolvedRetry | undefined {
  if (retry === false) return undefined
  const { budget, ...own } = typeof retry === 'number' ? { attempts: retry } : definedOnly<RetryOptions>(retry ?? {})
  const r = { ...base, ...own }
  if (r.attempts === 0) return undefined
  return {
    attempts: r.attempts,
    baseDelay: r.baseDelay,
    maxDelay: r.maxDelay,
    factor: r.factor,
    jitter: r.jitter,
    delay: r.delay,
    statusCodes: [...r.statusCodes],
    methods: [...new Set(r.methods.map((m) => m.toUpperCase()))],
    maxRetryAfter: r.maxRetryAfter,
    idempotencyKey: r.idempotencyKey,
    budget: budget === false
      ? undefined
      : budget === undefined
        ? (base.budget === undefined ? undefined : { ...base.budget })
        : { ...(base.budget ?? retryBudgetOptions.defaults), ...definedOnly(budget) }
  }
}

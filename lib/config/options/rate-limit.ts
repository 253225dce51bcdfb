import { boolean, booleanOr, fail, integer, number } from '../checkers'
import { ms, positive, positiveSpan } from '../values'
import { adaptiveRateOptions, type AdaptiveRateOptions, type ResolvedAdaptiveRate } from './adaptive-rate'
import { defineGroup, enabled, type Spec } from './group'

/** Client-side rate limit: a token bucket (`rate` per `interval`) or a sliding window (`limit` per `window`). */
export interface RateLimitOptions {
  /** Token bucket: tokens added per `interval`. */
  rate?: number
  /**
   * Token bucket: refill interval in milliseconds.
   * @default 1000
   */
  interval?: number
  /**
   * Token bucket: capacity.
   * @default rate
   */
  burst?: number
  /** Sliding window: calls allowed per `window`. */
  limit?: number
  /** Sliding window: length in milliseconds. */
  window?: number
  /**
   * Longest wait for permission in milliseconds; after it `RateLimitedError`.
   * @default 0
   */
  maxWait?: number
  /**
   * Halve the rate on a 429 from upstream and climb back additively on success.
   * @default false
   */
  adaptive?: boolean | AdaptiveRateOptions
  /**
   * One limit for every instance of the app on the registry's Redis (needs the `redis` option):
   * `true`, or `{ failClosed: true }` to refuse calls while Redis is unreachable instead of limiting each instance
   * on its own. With `adaptive`, each instance scales only its own share.
   * @default false
   */
  shared?: boolean | SharedRateLimitOptions
}

/** A rate limit shared through Redis (`rateLimit.shared`). */
export interface SharedRateLimitOptions {
  /**
   * While Redis is unreachable or slower than its `timeout`, refuse calls with `RateLimitedError` instead of falling
   * back to a limiter of the same settings in this process.
   * @default false
   */
  failClosed?: boolean
}

export const sharedRateLimitOptions = defineGroup({
  failClosed: { check: boolean, default: false }
} satisfies Spec<SharedRateLimitOptions>)

const kTokenBucketKeys = ['rate', 'interval', 'burst']
const kSlidingWindowKeys = ['limit', 'window']

export const rateLimitOptions = defineGroup({
  rate: { check: positive, default: undefined },
  interval: { check: positiveSpan, default: 1000 },
  // `rate` when left out (the resolver reads it): the bucket holds one interval's worth of tokens.
  burst: { check: number('a number >= 1', (n) => n >= 1), default: undefined },
  limit: { check: integer(1), default: undefined },
  window: { check: positiveSpan, default: undefined },
  maxWait: { check: ms, default: 0 },
  adaptive: { check: booleanOr(adaptiveRateOptions.check), default: false },
  shared: { check: booleanOr(sharedRateLimitOptions.check), default: false }
} satisfies Spec<RateLimitOptions>, {
  refine (value, key) {
    const bucket = kTokenBucketKeys.some((k) => value[k] !== undefined)
    const sliding = kSlidingWindowKeys.some((k) => value[k] !== undefined)
    if (bucket && sliding) fail(key, 'either rate (token bucket) or limit and window (sliding window), not both', value)
    if (!bucket && !sliding) fail(key, 'rate (token bucket) or limit and window (sliding window)', value)
    if (bucket && value.rate === undefined) fail(`${key}.rate`, 'a positive number (interval and burst need it)', undefined)
    if (sliding && value.limit === undefined) fail(`${key}.limit`, 'an integer >= 1 (window needs it)', undefined)
    if (sliding && value.window === undefined) fail(`${key}.window`, 'a positive number of milliseconds (limit needs it)', undefined)
  }
})

/** A rate limit after resolution: both algorithms in one shape. */
export interface ResolvedRateLimit {
  kind: 'token-bucket' | 'sliding-window'
  /** Token bucket: tokens per interval; sliding window: calls per window. */
  rate: number
  /** Token bucket: refill interval; sliding window: window length (ms). */
  interval: number
  /** Token bucket capacity (sliding window: equal to rate). */
  burst: number
  maxWait: number
  adaptive: ResolvedAdaptiveRate | undefined
  /** Kept in Redis, shared by every instance; `undefined` when each instance limits on its own. */
  shared?: Required<SharedRateLimitOptions>
}

/** A service's rate limit, `undefined` when off. */
export function resolveRateLimit (rateLimit: false | RateLimitOptions | undefined): ResolvedRateLimit | undefined {
  if (rateLimit === undefined || rateLimit === false) return undefined
  const d = rateLimitOptions.defaults
  const adaptive = enabled(rateLimit.adaptive ?? d.adaptive, adaptiveRateOptions.defaults)
  const maxWait = rateLimit.maxWait ?? d.maxWait
  if (rateLimit.rate !== undefined) {
    return {
      kind: 'token-bucket',
      rate: rateLimit.rate,
      interval: rateLimit.interval ?? d.interval,
      burst: rateLimit.burst ?? rateLimit.rate,
      maxWait,
      adaptive,
      shared: enabled(rateLimit.shared ?? d.shared, sharedRateLimitOptions.defaults)
    }
  }
  // Validation guarantees a sliding window has both `limit` and `window`.
  const limit = rateLimit.limit as number
  return { kind: 'sliding-window', rate: limit, interval: rateLimit.window as number, burst: limit, maxWait, adaptive, shared: enabled(rateLimit.shared ?? d.shared, sharedRateLimitOptions.defaults) }
}

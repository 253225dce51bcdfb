import type { ResolvedRateLimit } from '../config/resolved'
import { AdaptiveRateLimiter } from './adaptive'
import type { AdjustableRateLimiter, RateLimiter } from './limiter'
import { SlidingWindow } from './sliding-window'
import { TokenBucket } from './token-bucket'

/** The in-memory limiter a service's `rateLimit` option describes. */
export function createRateLimiter (options: ResolvedRateLimit): RateLimiter {
  const base: AdjustableRateLimiter = options.kind === 'token-bucket'
    ? new TokenBucket({ rate: options.rate, interval: options.interval, burst: options.burst })
    : new SlidingWindow({ limit: options.rate, window: options.interval })
  return options.adaptive === undefined ? base : new AdaptiveRateLimiter(base, options.adaptive)
}

export { AdaptiveRateLimiter, type AdaptiveOptions } from './adaptive'
export type { AdjustableRateLimiter, RateLimiter, RateLimiterStats } from './limiter'
export { SlidingWindow, type SlidingWindowOptions } from './sliding-window'
export { TokenBucket, type TokenBucketOptions } from './token-bucket'

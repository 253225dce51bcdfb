import type { ResolvedRateLimit } from '../config/resolved'
import type { RedisConnection } from '../redis/connection'
import { AdaptiveRateLimiter } from './adaptive'
import type { AdjustableRateLimiter, RateLimiter } from './limiter'
import { SharedRateLimiter } from './shared-limiter'
import { SlidingWindow } from './sliding-window'
import { TokenBucket } from './token-bucket'

/** Where a shared limiter keeps its bucket: the registry's Redis, and the service it limits (its key and logger). */
export interface SharedLimiterPlace {
  redis: RedisConnection
  service: string
  log: ConstructorParameters<typeof SharedRateLimiter>[3]
}

/**
 * The limiter a service's `rateLimit` option describes: in memory, or with `shared` (and a Redis connection: the
 * registry's check makes sure there is one) in Redis.
 */
export function createRateLimiter (options: ResolvedRateLimit, place?: SharedLimiterPlace): RateLimiter {
  const base: AdjustableRateLimiter = options.shared !== undefined && place !== undefined
    ? new SharedRateLimiter({ ...options, failClosed: options.shared.failClosed }, place.redis, place.service, place.log)
    : options.kind === 'token-bucket'
      ? new TokenBucket({ rate: options.rate, interval: options.interval, burst: options.burst })
      : new SlidingWindow({ limit: options.rate, window: options.interval })
  return options.adaptive === undefined ? base : new AdaptiveRateLimiter(base, options.adaptive)
}

export { AdaptiveRateLimiter, type AdaptiveOptions } from './adaptive'
export type { AdjustableRateLimiter, RateLimiter, RateLimiterStats } from './limiter'
export { SharedRateLimiter, type SharedLimiterState, type SharedRateLimiterOptions } from './shared-limiter'
export { SlidingWindow, type SlidingWindowOptions } from './sliding-window'
export { TokenBucket, type TokenBucketOptions } from './token-bucket'

import type { ResolvedService } from '../config/resolved'
import type { RedisConnection } from './connection'
import type { SharedBreakers } from './shared-breakers'

/** What `stats().<service>.redis` shows. */
export interface RedisStats {
  /** The registry's connection. */
  connection: RedisConnection['state']
  /** With `breaker.shared`: whether openings of other instances are received now. */
  breaker?: SharedBreakers['state']
}

/**
 * The `redis` entry of a service's stats, for a service that keeps state in Redis (`cache.store: 'redis'`,
 * `rateLimit.shared`, `breaker.shared`); `undefined` for one that does not, whose stats stay as they were.
 */
export function redisStatsOf (
  options: ResolvedService, redis: RedisConnection, breakers: SharedBreakers | undefined
): (() => RedisStats) | undefined {
  const sharedBreaker = options.breaker?.shared === true
  if (options.cache?.store !== 'redis' && options.rateLimit?.shared === undefined && !sharedBreaker) return undefined
  if (!sharedBreaker || breakers === undefined) return () => ({ connection: redis.state })
  return () => ({ connection: redis.state, breaker: breakers.state })
}

import { expectAssignable, expectNotAssignable, expectType } from 'tsd'
import type { BreakerOptions, HttpServicesOptions, RateLimitOptions, RedisStats, ServiceStats, SharedRateLimitOptions } from '../../index'

// `rateLimit.shared`: `true`, or `{ failClosed }`, for one limit across every instance on the registry's Redis.
expectAssignable<RateLimitOptions>({ rate: 50, shared: true })
expectAssignable<RateLimitOptions>({ rate: 50, shared: false })
expectAssignable<RateLimitOptions>({ rate: 50, maxWait: 200, shared: { failClosed: true } })
expectAssignable<RateLimitOptions>({ rate: 50, shared: {} })
expectAssignable<SharedRateLimitOptions>({ failClosed: false })
expectNotAssignable<SharedRateLimitOptions>({ failClosed: 'yes' })
expectNotAssignable<RateLimitOptions>({ rate: 50, shared: 'redis' })
declare const shared: SharedRateLimitOptions
expectType<boolean | undefined>(shared.failClosed)

// `breaker.shared`: a boolean.
expectAssignable<BreakerOptions>({ resetAfter: 30_000, shared: true })
expectNotAssignable<BreakerOptions>({ shared: { failClosed: true } })

expectAssignable<HttpServicesOptions>({
  redis: 'redis://127.0.0.1:6379',
  defaults: { breaker: { shared: true } },
  services: { pay: { baseUrl: 'https://psp.example', rateLimit: { rate: 100, shared: { failClosed: true } } } }
})

// `stats().<service>.redis` of a service keeping state in Redis.
declare const redisStats: RedisStats
expectType<'connected' | 'connecting' | 'reconnecting' | 'closed'>(redisStats.connection)
expectType<'subscribed' | 'unsubscribed' | undefined>(redisStats.breaker)
declare const serviceStats: ServiceStats
expectType<RedisStats | undefined>(serviceStats.redis)

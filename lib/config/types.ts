/**
 * The public option types. Each is declared, with its JSDoc and `@default`s, beside its checker, defaults and
 * resolver in options/<group>.ts; this module gathers them for index.ts and the rest of the library.
 */
export type { AdaptiveRateOptions } from './options/adaptive-rate'
export type { BreakerOptions } from './options/breaker'
export type { BulkheadOptions } from './options/bulkhead'
export type { CacheOptions } from './options/cache'
export type { CommonServiceOptions, Fallback } from './options/common'
export type { DeadlineHeadersOptions } from './options/deadline-headers'
export type { DnsOptions } from './options/dns'
export type { HedgeOptions } from './options/hedge'
export type { ProxyOptions } from './options/proxy'
export type { RateLimitOptions } from './options/rate-limit'
export type { RedisClient, RedisOptions } from './options/redis'
export type { HttpServicesOptions, UnderPressureOptions } from './options/registry'
export type { RetryOptions } from './options/retry'
export type { RetryBudgetOptions } from './options/retry-budget'
export type { ServiceOptions } from './options/service'
export type { TimeoutOptions } from './options/timeout'
export type { TlsOptions } from './options/tls'

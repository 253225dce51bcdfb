/** The options after resolution, each declared beside its group's resolver in options/<group>.ts. */
export type { ResolvedBreaker } from './options/breaker'
export type { ResolvedProxy } from './options/proxy'
export type { ResolvedRateLimit } from './options/rate-limit'
export type { ResolvedOptions } from './options/registry'
export type { ResolvedRetry } from './options/retry'
export type { ResolvedService } from './options/service'
export type { ResolvedTls } from './options/tls'

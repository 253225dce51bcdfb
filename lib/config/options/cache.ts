import { integer, oneOf } from '../checkers'
import { ms } from '../values'
import { defineGroup, type Spec } from './group'

/**
 * HTTP response caching (RFC 9111, undici's cache semantics) in front of the whole pipeline: a fresh stored answer
 * is served without reaching the rate limiter, the bulkhead, the breaker or the network. GET requests only.
 */
export interface CacheOptions {
  /**
   * Where entries are kept: `memory` (one store per service, in this process) or `redis` (shared by every instance
   * of the app; needs the registry's `redis` option).
   * @default 'memory'
   */
  store?: 'memory' | 'redis'
  /**
   * Largest body stored, in bytes; a larger response is passed on and not stored.
   * @default 5242880
   */
  maxEntrySize?: number
  /**
   * Most bytes the memory store keeps for the service (half its entries are evicted past it); Redis keeps what its
   * own memory policy lets it.
   * @default 104857600
   */
  maxSize?: number
  /**
   * How long after an entry went stale it may still be served when the upstream fails (connection error, timeout,
   * 5xx, open breaker, full bulkhead, rate limit), in milliseconds; `0` only honours the response's own
   * `stale-if-error` directive. Never for a response marked `must-revalidate`.
   * @default 0
   */
  staleIfError?: number
  /**
   * `shared` follows the rules of a cache serving many users (`private` and `Set-Cookie` responses are not stored,
   * nor responses to requests with credentials unless they allow it); `private` stores them, each set of credentials
   * (a hash of its credential headers and the call's `token`) getting entries of its own.
   * @default 'shared'
   */
  type?: 'shared' | 'private'
}

export const cacheOptions = defineGroup({
  store: { check: oneOf('memory', 'redis'), default: 'memory' },
  maxEntrySize: { check: integer(1), default: 5242880 },
  maxSize: { check: integer(1), default: 104857600 },
  staleIfError: { check: ms, default: 0 },
  type: { check: oneOf('shared', 'private'), default: 'shared' }
} satisfies Spec<CacheOptions>)

/** A cache after resolution; a service without one has `undefined`. */
export type ResolvedCache = Required<CacheOptions>

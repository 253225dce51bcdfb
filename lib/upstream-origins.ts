import type { ResolvedService } from './config/resolved'

/**
 * The upstreams a service balances over itself, one breaker each: its distinct origins when it has a breaker and
 * more than one, else `undefined` (one breaker, or none, and undici's pool picks the upstream). The dispatcher
 * (`./dispatcher`) and the breaker policy (`./pipeline/breaker`) both decide by it, so they always agree; it sits
 * below both so that neither imports the other.
 */
export function breakerUpstreams (o: ResolvedService): string[] | undefined {
  if (o.breaker === undefined || o.origins.length < 2) return undefined
  const origins = [...new Set(o.origins)]
  return origins.length > 1 ? origins : undefined
}

import { performance } from 'node:perf_hooks'
import { publishRateLimitDelayed, publishRateLimitRejected } from '../diagnostics/publish'
import { RateLimitedError, describe, stamp, withRetryAfter } from '../errors'
import { createRateLimiter, type RateLimiter } from '../rate-limit'
import { sleep } from './backoff'
import type { HttpResponse } from '../response'
import type { CallContext, Next, PolicyFactory, PolicySteps, ServiceRuntime } from './types'

interface ServiceLimiter {
  limiter: RateLimiter
  policy: PolicySteps
}

function rateLimited (ctx: CallContext, wait: number, maxWait: number): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  const e = new RateLimitedError(
    `${describe(target)}: client-side rate limit reached (next permit in ${Math.ceil(wait)} ms, longest wait ${Math.round(maxWait)} ms)`)
  return withRetryAfter(stamp(e, target), wait / 1000)
}

/** One limiter per service, shared by both of its chains. */
function limiterOf (service: ServiceRuntime): ServiceLimiter | undefined {
  const options = service.options.rateLimit
  if (options === undefined) return undefined
  return service.shared('rateLimit', () => create(service, options))
}

function create (service: ServiceRuntime, options: NonNullable<ServiceRuntime['options']['rateLimit']>): ServiceLimiter {
  const limiter = createRateLimiter(options, service.redis === undefined ? undefined : { redis: service.redis, service: service.name, log: service.log })
  const { maxWait, kind } = options
  let waited = 0
  let rejected = 0
  // Steps (`./chain`): a call with a permit at hand goes on with no promise of the limiter's.
  const policy: PolicySteps = {
    enter (ctx: CallContext, next: Next): Promise<HttpResponse> | undefined {
      const now = performance.now()
      // A wait that would outlive the call's deadline (its total timeout, the inbound request's) is not worth starting.
      const longest = ctx.deadline === Infinity ? maxWait : Math.min(maxWait, ctx.deadline - now)
      const wait = limiter.acquire(now, longest)
      if (wait === 0) return undefined
      return waitThenGo(ctx, next, wait, longest)
    }
  }
  /** A call that must wait for its permit (or for the shared limiter's answer), or is refused. */
  const waitThenGo = async (ctx: CallContext, next: Next, acquired: number | Promise<number>, longest: number): Promise<HttpResponse> => {
    const wait = typeof acquired === 'number' ? acquired : await acquired
    if (wait > 0) {
      if (wait > longest) {
        rejected++
        publishRateLimitRejected(ctx, wait, longest)
        throw rateLimited(ctx, wait, longest)
      }
      waited++
      publishRateLimitDelayed(ctx, wait, longest)
      // An aborted wait forfeits its reserved permit: the limiter errs on the slow side.
      await sleep(wait, ctx)
    }
    return next(ctx)
  }
  const shared = limiter.shared?.bind(limiter)
  service.addStats('rateLimit', shared === undefined
    ? () => ({ kind, maxWait, ...limiter.stats(performance.now()), waited, rejected })
    : () => ({ kind, maxWait, ...limiter.stats(performance.now()), waited, rejected, shared: shared() }))
  service.onReset?.(() => {
    limiter.reset()
    waited = 0
    rejected = 0
  })
  return { limiter, policy }
}

/**
 * Client-side rate limit (outermost but for fallback and cache): one permit per logical call, whatever its
 * retries. A call waits up to `maxWait` ms (and never past the inbound deadline) for a permit, else fails at once
 * with `RateLimitedError` (503, `Retry-After` = when a permit is next free).
 */
export const rateLimit: PolicyFactory = (service) => limiterOf(service)?.policy

/**
 * The adaptive limiter's feedback, placed inside retry and hedging so it sees the status of every attempt:
 * a 429 that a retry later overcomes still tells the limiter to slow down.
 */
export const rateLimitFeedback: PolicyFactory = (service) => {
  if (service.options.rateLimit?.adaptive === undefined) return undefined
  const limiter = (limiterOf(service) as ServiceLimiter).limiter
  return async (ctx: CallContext, next: Next): Promise<HttpResponse> => {
    const sentAt = performance.now()
    const res = await next(ctx)
    limiter.onResponse(res.status, sentAt, performance.now())
    return res
  }
}

import { performance } from 'node:perf_hooks'
import { TimeoutError, describe, stamp } from '../errors'
import type { HttpResponse } from '../response'
import { setDeadlineHeaders, type DeadlineHeaderNames } from './deadline-headers'
import { nextWithTimeout } from './next-with-timeout'
import type { CallContext, Next, PolicyFactory } from './types'

/** The attempt limit of a call: its own `timeout.attempt` over the service's; 0 is none. */
function limitOf (ctx: CallContext, serviceLimit: number): number {
  const t = ctx.options.timeout
  if (t !== undefined && typeof t === 'object' && t.attempt !== undefined) return t.attempt
  return serviceLimit
}

function attemptTimeoutError (ctx: CallContext, limit: number): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  return stamp(new TimeoutError(`${describe(target)}: attempt timeout after ${limit} ms`), target, { phase: 'attempt', timeout: limit })
}

/**
 * Attempt timeout (`timeout.attempt`): one attempt, its headers and its body, must end within the limit, or its
 * undici request is aborted (the socket closes: nothing keeps running upstream) and the attempt fails with a
 * `TimeoutError` of phase `'attempt'`, which the retry policy retries. The same per-attempt slot sends the opt-in
 * `deadlineHeaders`, so the remaining time they announce includes the attempt limit.
 */
export const attemptTimeout: PolicyFactory = (service, perCall) => {
  const serviceLimit = service.options.timeout.attempt ?? 0
  const headers = service.options.deadlineHeaders
  if (!perCall && serviceLimit <= 0 && headers === undefined) return undefined
  return (ctx: CallContext, next: Next): Promise<HttpResponse> => {
    const limit = limitOf(ctx, serviceLimit)
    if (limit > 0) return guard(ctx, next, limit, headers)
    if (headers !== undefined) setDeadlineHeaders(ctx, headers, ctx.deadline)
    return next(ctx)
  }
}
attemptTimeout.callOptions = ['timeout']

function guard (ctx: CallContext, next: Next, limit: number, headers: DeadlineHeaderNames | undefined): Promise<HttpResponse> {
  if (headers !== undefined) setDeadlineHeaders(ctx, headers, Math.min(ctx.deadline, performance.now() + limit))
  // The signal is this attempt's only: the retry policy above sends the next attempt with the call's own.
  return nextWithTimeout(ctx, next, limit, () => attemptTimeoutError(ctx, limit), true)
}

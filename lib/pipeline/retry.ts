import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { publishRetryRefused, publishRetryScheduled } from '../diagnostics/publish'
import type { RetryRefusal } from '../diagnostics/messages'
import { isHttpServicesError } from '../errors'
import type { HttpResponse } from '../response'
import { backoffDelay, sleep } from './backoff'
import { parseRetryAfter, requestedDelay } from './retry-after'
import { callOfFailure } from './attempt-call'
import { retryStateOf, spendBudget, type RetryState } from './retry-budget'
import { neverSent, retryPlanner, retryReason, type RetryPlan } from './retry-plan'
import { kBreakerView, type BreakerView, type CallContext, type Next, type PolicyFactory } from './types'

/**
 * Retry with exponential backoff and jitter, honouring `Retry-After` / `X-RateLimit-Reset`, capped by the service's
 * retry budget, logged at warn. A call's `retry` option overrides the service's, and can turn retries on for a
 * service that leaves them off (the per-call chain then holds this policy).
 */
export const retry: PolicyFactory = (service, perCall) => {
  if (service.options.retry === undefined && !perCall) return undefined
  const { planFor } = retryPlanner(service)
  const state = retryStateOf(service)
  // Steps (`./chain`): the first attempt goes below with no promise of this policy's, and only an outcome that is
  // to be retried starts the (async) retry loop.
  return {
    enter (ctx: CallContext, below: Next): Promise<HttpResponse> | undefined {
      const plan = planFor(ctx.options.retry)
      // A stream body is gone once sent: never replayed.
      if (plan === undefined || !ctx.replayable) return below(ctx)
      if (plan.idempotencyKey && !plan.methods.has(ctx.method) && ctx.headers['idempotency-key'] === undefined) {
        ctx.setHeader('idempotency-key', randomUUID())
      }
      return undefined
    },
    response (res: HttpResponse, ctx: CallContext, below: Next): HttpResponse | Promise<HttpResponse> {
      const plan = planFor(ctx.options.retry) as RetryPlan
      if (!plan.statusCodes.has(res.status)) return res
      return retryLoop(ctx, below, plan, state, repeatable(ctx, plan), res, undefined)
    },
    failure (err: unknown, ctx: CallContext, below: Next): Promise<HttpResponse> {
      // Not an attempt's failure (an open breaker …): final, after one attempt.
      if (callOfFailure(err) === undefined) {
        if (isHttpServicesError(err)) err.attempts = 1
        throw err
      }
      const plan = planFor(ctx.options.retry) as RetryPlan
      return retryLoop(ctx, below, plan, state, repeatable(ctx, plan), undefined, err)
    }
  }
}
retry.callOptions = ['retry']

/** Whether a call may be sent again after it was handled: an idempotent method, or an `Idempotency-Key`. */
function repeatable (ctx: CallContext, plan: RetryPlan): boolean {
  return plan.methods.has(ctx.method) || ctx.headers['idempotency-key'] !== undefined
}

/** Judges the outcome of the first attempt (`res` or `error`) and of each retry, retrying while the plan allows. */
async function retryLoop (
  ctx: CallContext, next: Next, plan: RetryPlan, state: RetryState, repeatable: boolean,
  res: HttpResponse | undefined, error: unknown
): Promise<HttpResponse> {
  const tries = plan.attempts + 1
  for (let attempt = 1; ; attempt++) {
    let reason: string | undefined
    if (res !== undefined) {
      if (!plan.statusCodes.has(res.status)) return settled(ctx, res)
      // A status means the request was sent and handled: only a repeatable request may be sent again.
      if (repeatable) reason = `status ${res.status}`
    } else if (ctx.signal?.aborted !== true) {
      reason = retryReason(error)
      if (reason !== undefined && !repeatable && !neverSent(error)) reason = undefined
    }
    if (reason === undefined) return settled(ctx, res, error)
    if (attempt >= tries) return giveUp(ctx, res, error, attempt, tries, reason, 'attempts')

    const asked = res !== undefined ? requestedDelay(res.status, res.headers) : undefined
    if (asked !== undefined && asked > plan.maxRetryAfter) {
      return giveUp(ctx, res, error, attempt, tries, reason, 'retry-after', asked)
    }
    // Where the wait comes from, for the log line: the upstream's headers, the `delay` option or the backoff.
    const delaySource = asked === undefined
      ? plan.delay !== undefined ? 'delay' : 'backoff'
      : parseRetryAfter((res as HttpResponse).headers['retry-after']) !== undefined ? 'retry-after' : 'x-ratelimit-reset'
    let delayMs: number
    try {
      delayMs = Math.max(0, Math.round(asked ?? (plan.delay !== undefined
        ? plan.delay(attempt, res ?? error)
        : backoffDelay(attempt, plan.baseDelay, plan.factor, plan.maxDelay, plan.jitter))))
    } catch (err) {
      // A throwing `delay` option ends the call; the failed response is not returned, so it is dropped.
      res?.destroy()
      throw err
    }
    if (performance.now() + delayMs >= ctx.deadline) {
      return giveUp(ctx, res, error, attempt, tries, reason, 'deadline', delayMs)
    }
    // The breaker (published on the service: this policy does not import it) may have opened on this very failure:
    // when no attempt could go anywhere once the wait is over, the call ends now with the upstream's own answer.
    // A breaker that half-opens within the wait lets the retry through as its probe.
    const breaker = ctx.service.sharedIf<BreakerView>(kBreakerView)
    if (breaker !== undefined && breaker.state === 'open' && breaker.retryAfterMs > delayMs) {
      return giveUp(ctx, res, error, attempt, tries, reason, 'breaker', undefined, Math.ceil(breaker.retryAfterMs))
    }
    if (!spendBudget(state, plan.budget)) {
      return giveUp(ctx, res, error, attempt, tries, reason, 'budget')
    }
    state.retries++
    // The log line ("retrying GET billing after status 503 …") is the diagnostics log subscriber's.
    publishRetryScheduled(ctx, attempt, tries, reason, delayMs, delaySource)
    // The failed body is read while the call sleeps; what is not read by the end of the sleep is dropped.
    if (res !== undefined) void res.discard()
    try {
      await sleep(delayMs, ctx)
    } catch (err) {
      return settled(ctx, undefined, err)
    } finally {
      res?.destroy()
    }
    ctx.attempt++
    res = undefined
    error = undefined
    try {
      res = await next(ctx)
    } catch (err) {
      error = err
    }
  }
}

/** The outcome of the call: the response, or the error thrown, carrying the number of attempts made. */
function settled (ctx: CallContext, res: HttpResponse | undefined, error?: unknown): HttpResponse {
  if (res !== undefined) {
    res.attempts = ctx.attempt
    return res
  }
  if (isHttpServicesError(error)) error.attempts = ctx.attempt
  throw error
}

/** The call ends with its last outcome although `reason` could be retried: `refusal` says why (published, and logged). */
function giveUp (
  ctx: CallContext, res: HttpResponse | undefined, error: unknown, attempt: number, of: number, reason: string,
  refusal: RetryRefusal, delayMs?: number, retryAfterMs?: number
): HttpResponse {
  publishRetryRefused(ctx, attempt, of, reason, refusal, delayMs, retryAfterMs)
  return settled(ctx, res, error)
}

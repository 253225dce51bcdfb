import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { resolveRetry } from '../config/resolve'
import type { ResolvedRetry } from '../config/resolved'
import type { RetryOptions } from '../config/types'
import { commonServiceSpec } from '../config/validate'
import { ConnectionError, TimeoutError, isHttpServicesError, redactPath, type TimeoutPhase } from '../errors'
import type { HttpResponse } from '../response'
import { proxyConnectStatus } from '../transport-errors'
import { backoffDelay, sleep, type Jitter } from './backoff'
import { parseRetryAfter, requestedDelay } from './retry-after'
import { callOfFailure, callOfResponse } from './attempt-call'
import { retryStateOf, type RetryBudgetLimits, type RetryState } from './retry-budget'
import { kBreakerView, type BreakerView, type CallContext, type Next, type PolicyFactory, type ServiceRuntime } from './types'

/** The retry options of one call, ready to use. */
export interface RetryPlan {
  /** Retries after the first try. */
  attempts: number
  baseDelay: number
  maxDelay: number
  factor: number
  jitter: Jitter
  delay: ((attempt: number, error: unknown) => number) | undefined
  statusCodes: ReadonlySet<number>
  methods: ReadonlySet<string>
  maxRetryAfter: number
  idempotencyKey: boolean
  /** `undefined` when the budget is off for the call. */
  budget: RetryBudgetLimits | undefined
}

const kRetriedCodes = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'UND_ERR_SOCKET'])
const kRetriedPhases = new Set<TimeoutPhase>(['connect', 'headers', 'attempt'])
// Failures that prove the request never left: no connection, or no address to connect to.
const kNeverSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN'])
// A proxy's answers to CONNECT that say the upstream or the proxy is unavailable for now (407 asks for credentials).
const kRetriedProxyStatuses = new Set([502, 503, 504])

/**
 * Why a failed attempt may be retried (`'ECONNRESET'`, `'timeout headers'`, `'proxy CONNECT 503'` …), or `undefined`
 * when it may not: the caller's abort, the total timeout, TLS failures, a proxy refusing the tunnel for good (403,
 * 407), an open breaker, a full bulkhead and anything that is not a transport failure of this library.
 */
export function retryReason (err: unknown): string | undefined {
  if (!isHttpServicesError(err)) return undefined
  if (err instanceof TimeoutError) return kRetriedPhases.has(err.phase) ? `timeout ${err.phase}` : undefined
  if (err instanceof ConnectionError) {
    const code = err.errno
    if (code !== undefined && kRetriedCodes.has(code)) return code
    const status = proxyConnectStatus(err)
    return status !== undefined && kRetriedProxyStatuses.has(status) ? `proxy CONNECT ${status}` : undefined
  }
  return undefined
}

/**
 * `true` when a failure shows the request was never sent (so even a POST may be repeated): no connection, or a
 * proxy that did not open the tunnel.
 */
export function neverSent (err: unknown): boolean {
  if (err instanceof TimeoutError) return err.phase === 'connect'
  if (err instanceof ConnectionError) {
    return err.errno !== undefined && (kNeverSentCodes.has(err.errno) || err.errno === 'ERR_PROXY_CONNECT_STATUS')
  }
  return false
}

/** The plan of resolved retry options. */
export function planOf (r: ResolvedRetry): RetryPlan {
  // `resolveRetry` made `r` complete and checked: only the lists become sets, and the budget keeps its limits.
  return {
    ...r,
    statusCodes: new Set(r.statusCodes),
    methods: new Set(r.methods),
    budget: r.budget === undefined ? undefined : { ratio: r.budget.ratio, minPerSecond: r.budget.minPerSecond }
  }
}

/**
 * A call's `retry` option over the service's resolved retry options (`resolveRetry`, as for the service's own): a
 * number is `attempts`, `false` and `0` turn retries off (`undefined`). The option is checked like the service's.
 */
export function callPlan (base: ResolvedRetry, option: number | false | RetryOptions): RetryPlan | undefined {
  commonServiceSpec.retry(option, 'retry')
  const resolved = resolveRetry(option, base)
  return resolved === undefined ? undefined : planOf(resolved)
}

/** How one service turns a call's `retry` option into a plan: shared by the retry and hedging policies. */
export interface RetryPlanner {
  /** The plan of the options a call's own `retry` is merged over: the service's, or the built-in ones. */
  readonly basePlan: RetryPlan
  /** The plan of a call (`undefined`: no retries); checks the option and throws `InvalidOptionsError` when it is bad. */
  planFor: (option: number | false | RetryOptions | undefined) => RetryPlan | undefined
}

/** The retry planner of a service, made on first use. */
export function retryPlanner (service: ServiceRuntime): RetryPlanner {
  return service.shared('retryPlanner', () => createPlanner(service.options.retry))
}

function createPlanner (resolved: ResolvedRetry | undefined): RetryPlanner {
  const base = resolved ?? resolveRetry(undefined) as ResolvedRetry
  const basePlan = planOf(base)
  const servicePlan = resolved === undefined ? undefined : basePlan
  // Call options are often hoisted constants: each is checked and merged once.
  const plans = new WeakMap<object, RetryPlan | null>()
  const numbered = new Map<number, RetryPlan | undefined>()
  const planFor = (option: number | false | RetryOptions | undefined): RetryPlan | undefined => {
    if (option === undefined) return servicePlan
    if (typeof option === 'object' && option !== null) {
      let plan = plans.get(option)
      if (plan === undefined) {
        plan = callPlan(base, option) ?? null
        plans.set(option, plan)
      }
      return plan ?? undefined
    }
    if (typeof option === 'number' && numbered.has(option)) return numbered.get(option)
    const plan = callPlan(base, option)
    if (typeof option === 'number') numbered.set(option, plan)
    return plan
  }
  return { basePlan, planFor }
}

/**
 * Retry with exponential backoff and jitter, honouring `Retry-After` / `X-RateLimit-Reset`, capped by the service's
 * retry budget, logged at warn. A call's `retry` option overrides the service's, and can turn retries on for a
 * service that leaves them off (the per-call chain then holds this policy).
 */
export const retry: PolicyFactory = (service, perCall) => {
  if (service.options.retry === undefined && !perCall) return undefined
  const { planFor } = retryPlanner(service)
  const state = retryStateOf(service)

  // The first attempt's outcome is judged by functions made once per chain (`next` does not change), which find
  // the call on the outcome (`./attempt-call`): a call holds no closure while its first attempt is in flight.
  let inner: Next | undefined
  let judgeFirst: (res: HttpResponse) => HttpResponse | Promise<HttpResponse>
  let judgeFirstFailure: (err: unknown) => Promise<HttpResponse>
  const bind = (next: Next): void => {
    inner = next
    judgeFirst = (res) => {
      const ctx = callOfResponse(res)
      if (ctx === undefined) return res
      const plan = planFor(ctx.options.retry) as RetryPlan
      if (!plan.statusCodes.has(res.status)) return res
      return retryLoop(ctx, next, plan, state, repeatable(ctx, plan), res, undefined)
    }
    judgeFirstFailure = async (err) => {
      const ctx = callOfFailure(err)
      // Not an attempt's failure (an open breaker …): final, after one attempt.
      if (ctx === undefined) {
        if (isHttpServicesError(err)) err.attempts = 1
        throw err
      }
      const plan = planFor(ctx.options.retry) as RetryPlan
      return await retryLoop(ctx, next, plan, state, repeatable(ctx, plan), undefined, err)
    }
  }

  // Not an async function: a call that is not retried costs no extra promise.
  return (ctx: CallContext, next: Next): Promise<HttpResponse> => {
    let plan: RetryPlan | undefined
    try {
      plan = planFor(ctx.options.retry)
    } catch (err) {
      return Promise.reject(err)
    }
    // A stream body is gone once sent: never replayed.
    if (plan === undefined || !ctx.replayable) return next(ctx)
    if (next !== inner) bind(next)
    if (plan.idempotencyKey && !plan.methods.has(ctx.method) && ctx.headers['idempotency-key'] === undefined) {
      ctx.setHeader('idempotency-key', randomUUID())
    }
    return next(ctx).then(judgeFirst, judgeFirstFailure)
  }
}

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
    if (attempt >= tries) return giveUp(ctx, res, error, attempt, tries, reason, 'no retries left')

    const asked = res !== undefined ? requestedDelay(res.status, res.headers) : undefined
    if (asked !== undefined && asked > plan.maxRetryAfter) {
      return giveUp(ctx, res, error, attempt, tries, reason, `the upstream asks to wait ${Math.ceil(asked)} ms, more than maxRetryAfter`)
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
      return giveUp(ctx, res, error, attempt, tries, reason, `a wait of ${delayMs} ms would pass the deadline`)
    }
    // The breaker (published on the service: this policy does not import it) may have opened on this very failure:
    // when no attempt could go anywhere once the wait is over, the call ends now with the upstream's own answer.
    // A breaker that half-opens within the wait lets the retry through as its probe.
    const breaker = ctx.service.sharedIf<BreakerView>(kBreakerView)
    if (breaker !== undefined && breaker.state === 'open' && breaker.retryAfterMs > delayMs) {
      const retryAfterMs = Math.ceil(breaker.retryAfterMs)
      return giveUp(ctx, res, error, attempt, tries, reason,
        `the circuit breaker is open for ${retryAfterMs} ms more: no attempt can be made`, { breaker: 'open', retryAfterMs })
    }
    if (plan.budget !== undefined && state.budget !== undefined && !state.budget.tryRetry(plan.budget)) {
      state.budgetExhausted++
      return giveUp(ctx, res, error, attempt, tries, reason, 'retry budget exhausted')
    }
    state.retries++
    // `service` comes from the logger's bindings (ctx.log is a child with { service }).
    const asks = delaySource === 'retry-after' ? ' as Retry-After asks' : delaySource === 'x-ratelimit-reset' ? ' as X-RateLimit-Reset asks' : ''
    ctx.log.warn({ method: ctx.method, path: redactPath(ctx.path), upstream: upstreamOf(ctx), attempt, of: tries, delayMs, delaySource, reason },
      `retrying ${ctx.method} ${ctx.service.name} after ${reason} (attempt ${attempt} of ${tries} failed), next in ${delayMs} ms${asks}`)
    // The failed body is read while the call sleeps; what is not read by the end of the sleep is dropped.
    if (res !== undefined) void discard(res)
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

/** Small error bodies are read to the end so the connection is reused; others are destroyed. */
const kDumpLimit = 64 * 1024

/**
 * Reads a small failed response to its end (its connection is kept) or destroys it. A body of unknown length
 * (chunked, or decoded from a compressed one) is read up to the limit, then destroyed if it goes on.
 */
export function discard (res: HttpResponse): Promise<void> {
  const length = res.headers['content-length']
  if (length !== undefined && Number(length) > kDumpLimit) {
    res.destroy()
    return Promise.resolve()
  }
  return res.drain(kDumpLimit)
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

/**
 * The upstream the last attempt went to: the one the breaker picked (several `baseUrl`s and a breaker), else the
 * service's only origin; `undefined` for a balanced pool, which does not say which upstream answered.
 */
function upstreamOf (ctx: CallContext): string | undefined {
  if (ctx.upstream !== undefined) return ctx.upstream.origin
  const origins = ctx.service.options.origins
  for (const o of origins) if (o !== origins[0]) return undefined
  return origins[0]
}

function giveUp (
  ctx: CallContext, res: HttpResponse | undefined, error: unknown, attempt: number, of: number, reason: string, why: string,
  extra?: Record<string, unknown>
): HttpResponse {
  ctx.log.warn({ method: ctx.method, path: redactPath(ctx.path), upstream: upstreamOf(ctx), attempt, of, reason, why, ...extra },
    `giving up ${ctx.method} ${ctx.service.name} after ${reason}: ${why}`)
  return settled(ctx, res, error)
}

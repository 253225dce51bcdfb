import { resolveRetry } from '../config/resolve'
import type { ResolvedRetry } from '../config/resolved'
import type { RetryOptions } from '../config/types'
import { commonServiceSpec } from '../config/validate'
import { ConnectionError, TimeoutError, isHttpServicesError, type TimeoutPhase } from '../errors'
import { proxyConnectStatus } from '../transport-errors'
import type { Jitter } from './backoff'
import type { RetryBudgetLimits } from './retry-budget'
import type { ServiceRuntime } from './types'

/**
 * What a call may retry and how: the retry options of one call, ready to use, and the failures that may be retried.
 * Shared by the retry and hedging policies (a hedge loses to a retried status, and spends the same budget), so it
 * sits below both: neither policy imports the other.
 */
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

/** The retry planner of a service, made on first use (by whichever of its retry and hedging policies comes first). */
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

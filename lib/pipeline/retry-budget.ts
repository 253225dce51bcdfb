import { performance } from 'node:perf_hooks'
import { builtInDefaults } from '../config/resolve'
import type { ServiceRuntime } from './types'

/** Options of a retry budget, resolved. */
export interface RetryBudgetLimits {
  /** Retries allowed per request over the window. */
  ratio: number
  /** Retries per second always allowed. */
  minPerSecond: number
}

/** What `stats()` shows of a retry budget. */
export interface RetryBudgetStats extends RetryBudgetLimits {
  /** Window length in milliseconds. */
  window: number
  /** Requests to the service in the window. */
  requests: number
  /** Retries and hedges spent in the window. */
  retries: number
  /** Retries still allowed now. */
  available: number
}

const kBuckets = 10

/**
 * Caps retries at `ratio` of the service's recent requests, with a floor of `minPerSecond` (Finagle's and gRPC's
 * retry budgets), so a failing upstream sees about `1 + ratio` times the offered load instead of `attempts` times.
 *
 * The window is `kBuckets` buckets. Requests are not counted here: each bucket keeps the service's own request
 * counter as it was when the bucket began, so the requests in the window are a subtraction and a call that is not
 * retried pays nothing. Buckets move on only when the budget is consulted, so the requests of a quiet spell count from
 * the oldest bucket still in the window; after a spell longer than the whole window they are forgotten (the floor
 * still allows retries), which errs towards fewer retries.
 */
export class RetryBudget {
  readonly window: number
  readonly limits: RetryBudgetLimits
  private readonly counters: { readonly requests: number }
  private readonly bucketMs: number
  private readonly starts: number[]
  private readonly spent: number[]
  private spentTotal = 0
  private current: number

  constructor (counters: { readonly requests: number }, limits: RetryBudgetLimits, window: number, now: number = performance.now()) {
    this.counters = counters
    this.limits = { ratio: limits.ratio, minPerSecond: limits.minPerSecond }
    this.window = window
    this.bucketMs = window / kBuckets
    this.starts = new Array<number>(kBuckets).fill(counters.requests)
    this.spent = new Array<number>(kBuckets).fill(0)
    this.current = Math.floor(now / this.bucketMs)
  }

  /**
   * Spends one retry when the budget allows it and returns `true`; returns `false` otherwise. `limits` overrides the
   * budget's ratio and floor for one call (the window stays the service's).
   */
  tryRetry (limits: RetryBudgetLimits = this.limits, now: number = performance.now()): boolean {
    this.advance(now)
    if (this.spentTotal >= this.allowed(limits)) return false
    this.spent[this.current % kBuckets]++
    this.spentTotal++
    return true
  }

  /** Forgets the window: no retries spent, and the requests counted from the service's counter as it is now. */
  reset (now: number = performance.now()): void {
    this.starts.fill(this.counters.requests)
    this.spent.fill(0)
    this.spentTotal = 0
    this.current = Math.floor(now / this.bucketMs)
  }

  stats (now: number = performance.now()): RetryBudgetStats {
    this.advance(now)
    const allowed = this.allowed(this.limits)
    return {
      ratio: this.limits.ratio,
      minPerSecond: this.limits.minPerSecond,
      window: this.window,
      requests: this.requests(),
      retries: this.spentTotal,
      available: Math.max(0, Math.ceil(allowed - this.spentTotal))
    }
  }

  private requests (): number {
    // The oldest bucket of the window is the one recycled next.
    return this.counters.requests - this.starts[(this.current + 1) % kBuckets]
  }

  private allowed (limits: RetryBudgetLimits): number {
    return Math.max(limits.ratio * this.requests(), limits.minPerSecond * this.window / 1000)
  }

  private advance (now: number): void {
    const index = Math.floor(now / this.bucketMs)
    const steps = Math.min(index - this.current, kBuckets)
    if (steps <= 0) return
    const requests = this.counters.requests
    for (let i = index - steps + 1; i <= index; i++) {
      const slot = i % kBuckets
      this.spentTotal -= this.spent[slot]
      this.spent[slot] = 0
      this.starts[slot] = requests
    }
    this.current = index
  }
}

/** Retry state shared by a service's retry and hedge policies (both chains of the service). */
export interface RetryState {
  /** `undefined` when the service turned the budget off (`retry.budget: false`). */
  readonly budget: RetryBudget | undefined
  /** Retries made. */
  retries: number
  /** Hedged attempts sent. */
  hedges: number
  /** Retries and hedges refused by the budget. */
  budgetExhausted: number
}

/**
 * Spends one retry or hedge from the service's budget under the call's `limits` (`undefined`: the call turned the
 * budget off) and returns `true`; returns `false` when the budget is exhausted, counting the refusal.
 */
export function spendBudget (state: RetryState, limits: RetryBudgetLimits | undefined): boolean {
  if (limits === undefined || state.budget === undefined || state.budget.tryRetry(limits)) return true
  state.budgetExhausted++
  return false
}

/**
 * The retry state of `service`, created on first use and shown by `stats()` under `retry`. The budget takes the
 * service's `retry.budget`, or the built-in one when the service leaves retries off (per-call retries and hedges
 * are still budgeted).
 */
export function retryStateOf (service: ServiceRuntime): RetryState {
  return service.shared('retry', () => createRetryState(service))
}

function createRetryState (service: ServiceRuntime): RetryState {
  const retry = service.options.retry
  const options = retry !== undefined ? retry.budget : builtInDefaults.retryBudget
  const budget = options === undefined ? undefined : new RetryBudget(service.counters, options, options.window)
  const s: RetryState = { budget, retries: 0, hedges: 0, budgetExhausted: 0 }
  service.addStats('retry', () => ({
    retries: s.retries,
    hedges: s.hedges,
    budgetExhausted: s.budgetExhausted,
    budget: s.budget?.stats()
  }))
  // Runs after the service zeroed its request counter, which the budget's window counts from.
  service.onReset?.(() => {
    s.retries = 0
    s.hedges = 0
    s.budgetExhausted = 0
    s.budget?.reset()
  })
  return s
}

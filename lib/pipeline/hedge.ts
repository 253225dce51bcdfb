import { publishHedgeFired } from '../diagnostics/publish'
import { whenBodyDone } from '../body-done'
import { CallSignal } from '../call-signal'
import { RequestAbortedError, describe, isHttpServicesError, stamp } from '../errors'
import type { HttpResponse } from '../response'
import { retryStateOf, spendBudget, type RetryState } from './retry-budget'
import { retryPlanner, type RetryPlan } from './retry-plan'
import type { CallContext, Next, PolicyFactory } from './types'
import { copyHeaders } from '../copy-headers'

/** Methods that may be sent twice at once; other methods are hedged only with an `Idempotency-Key`. */
const kIdempotent = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])

interface HedgeSettings {
  delay: number
  maxHedges: number
  state: RetryState
}

/**
 * Hedged requests: when no response came `delay` ms after an attempt was sent, another one is sent (up to
 * `maxHedges`), each through the policies below (breaker, attempt timeout …) with its own abort signal. The first
 * response whose status is not a retried one wins; the others are aborted and their bodies destroyed. When every
 * attempt fails, the last failure is the outcome, for the retry policy above to judge. Only idempotent methods (or
 * requests carrying an `Idempotency-Key`) with a replayable body are hedged, and each hedge spends the retry budget.
 * The retried statuses and the budget are the call's: its own `retry` option over the service's (the service's, or
 * the built-in ones, when the call turns retries off).
 */
export const hedge: PolicyFactory = (service) => {
  const h = service.options.hedge
  if (h === undefined) return undefined
  const settings: HedgeSettings = { delay: h.delay, maxHedges: h.maxHedges, state: retryStateOf(service) }
  const { basePlan, planFor } = retryPlanner(service)
  return (ctx: CallContext, next: Next): Promise<HttpResponse> => {
    if (!ctx.replayable || (!kIdempotent.has(ctx.method) && ctx.headers['idempotency-key'] === undefined)) {
      return next(ctx)
    }
    let plan: RetryPlan
    try {
      plan = planFor(ctx.options.retry) ?? basePlan
    } catch (err) {
      return Promise.reject(err)
    }
    return new HedgedCall(ctx, next, settings, plan).promise
  }
}

/** One hedged call: its attempts, each a view of the call with its own signal, attempt number and headers. */
class HedgedCall {
  readonly promise: Promise<HttpResponse>
  private readonly ctx: CallContext
  private readonly next: Next
  private readonly settings: HedgeSettings
  /** The call's retry plan: its retried statuses lose to a pending attempt, and its budget pays for hedges. */
  private readonly plan: RetryPlan
  private readonly attempts: CallContext[] = []
  /** Attempts still waiting for their response. */
  private readonly running = new Set<CallContext>()
  private done = false
  private timer: NodeJS.Timeout | undefined = undefined
  private failure: Failure | undefined = undefined
  private resolve!: (res: HttpResponse) => void
  private reject!: (err: unknown) => void

  constructor (ctx: CallContext, next: Next, settings: HedgeSettings, plan: RetryPlan) {
    this.ctx = ctx
    this.next = next
    this.settings = settings
    this.plan = plan
    this.promise = new Promise<HttpResponse>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    this.launch()
    this.arm()
  }

  private launch (): void {
    const ctx = this.ctx
    // A view of the call: what the policies below set (signal, attempt, headers) stays on the view.
    const view = Object.create(ctx) as CallContext
    const n = this.attempts.length
    view.attempt = ctx.attempt + n
    // Attempts run at once, so each gets its own header object to change.
    if (n > 0) view.headers = copyHeaders(ctx.headers)
    const signal = new CallSignal()
    if (ctx.signal !== undefined) signal.follow(ctx.signal)
    view.signal = signal
    this.attempts.push(view)
    this.running.add(view)
    let pending: Promise<HttpResponse>
    try {
      pending = this.next(view)
    } catch (err) {
      pending = Promise.reject(err)
    }
    pending.then((res) => this.onResponse(view, res), (err) => this.onError(view, err))
  }

  private arm (): void {
    if (this.attempts.length > this.settings.maxHedges) return
    this.timer = setTimeout(() => this.onDelay(), this.settings.delay)
  }

  private onDelay (): void {
    this.timer = undefined
    if (this.done || this.ctx.signal?.aborted === true) return
    const state = this.settings.state
    if (!spendBudget(state, this.plan.budget)) return
    state.hedges++
    publishHedgeFired(this.ctx, this.ctx.attempt + this.attempts.length, this.attempts.length, this.settings.delay)
    this.launch()
    this.arm()
  }

  private onResponse (view: CallContext, res: HttpResponse): void {
    this.running.delete(view)
    if (this.done) {
      res.destroy()
      return
    }
    if (!this.plan.statusCodes.has(res.status)) {
      this.finish(view, res)
      return
    }
    this.fail({ view, res })
  }

  private onError (view: CallContext, error: unknown): void {
    this.running.delete(view)
    if (!this.done) this.fail({ error })
  }

  /** Keeps the latest failure; the call fails with it once no attempt is left in flight. */
  private fail (failure: Failure): void {
    const earlier = this.failure?.res
    if (earlier !== undefined) void earlier.discard()
    this.failure = failure
    if (this.running.size > 0) return
    if (failure.res !== undefined) {
      this.finish(failure.view, failure.res)
      return
    }
    this.finish(undefined, undefined)
    const error = failure.error
    if (isHttpServicesError(error)) error.attempts = this.ctx.attempt
    this.reject(error)
  }

  /** Ends the call with the response of `answered` (aborting the other attempts), or with no response. */
  private finish (answered: CallContext | undefined, res: HttpResponse | undefined): void {
    this.done = true
    clearTimeout(this.timer)
    const ctx = this.ctx
    ctx.attempt += this.attempts.length - 1
    let reason: unknown
    for (const view of this.attempts) {
      if (view === answered) continue
      const signal = view.signal as CallSignal
      if (!this.running.has(view)) {
        signal.unlink()
        continue
      }
      if (reason === undefined) {
        const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
        reason = stamp(new RequestAbortedError(`${describe(target)}: another hedged attempt answered first`), target)
      }
      signal.abort(reason)
    }
    if (answered === undefined || res === undefined) return
    const lost = this.failure?.res
    if (lost !== undefined && lost !== res) void lost.discard()
    // The answering attempt's signal follows the caller's until its body is read or destroyed.
    const signal = answered.signal as CallSignal
    whenBodyDone(res, () => signal.unlink())
    res.attempts = ctx.attempt
    this.resolve(res)
  }
}

interface Failure {
  view?: CallContext
  res?: HttpResponse
  error?: unknown
}

import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import CircuitBreaker from 'opossum'
import {
  CircuitOpenError,
  ClientClosedError,
  TimeoutError,
  TransportError,
  describe,
  isCallerTimeout,
  stamp,
  withRetryAfter
} from '../errors'
import type { HttpResponse } from '../response'
import { publishBreakerState } from '../diagnostics/publish'
import { isFailureStatus } from './failure-status'
import { RollingCounts } from './rolling-counts'
import { stepsAsPolicy } from './chain'
import type { BreakerState, CallContext, Logger, Next, Policy, PolicySteps, ServiceRuntime } from './types'

/** What `stats().breaker` shows of one breaker. */
export interface BreakerStats {
  state: BreakerState
  opens: number
  calls: number
  successes: number
  failures: number
  rejected: number
  retryAfterMs: number
}

/** What a failed attempt was, for the log line of the opening it causes: `status 503`, `ECONNREFUSED`, `timeout headers`. */
function failureReason (err: unknown): string {
  if (err instanceof TimeoutError) return `timeout ${err.phase}`
  const { errno, code } = err as { errno?: unknown, code?: unknown }
  return typeof errno === 'string' ? errno : typeof code === 'string' ? code : 'error'
}

/**
 * opossum rotates a breaker's window on a timer of its own unless given a controller that emits `rotate`. Its window
 * is not used here (see `./rolling-counts`), so every breaker gets this one, which never emits: no timer at all.
 */
const kNoRotation = new EventEmitter().setMaxListeners(0)

/** opossum needs an action; nothing here calls `fire()`, so it never runs. */
function neverFired (): Promise<never> {
  return Promise.reject(new Error('fastify-http-services does not fire its breakers through opossum'))
}

/**
 * One circuit breaker: a service's, or with `upstream` one upstream's of a service with several (`./upstreams` then
 * picks the upstream of each attempt and runs its breaker's `policy`).
 *
 * opossum holds the state of a breaker that has opened (open, half-open, closed again), opens and closes on `open()` /
 * `close()`, times the open period (`resetAfter`), moves to half-open and emits the state changes; it is made on the
 * first opening (see `machine()`). The counting is done here, per
 * attempt, without `fire()` (why: `./rolling-counts`): a response whose status counts as a failure (5xx, 408, 429),
 * a timeout or a connection or TLS failure (`TransportError`) is a failure; any other response a success; the
 * caller's aborts, a closing client and errors of the call itself count for nothing. Past `minimumRequests` calls in
 * the window, a failure rate above `errorPercentage` opens the breaker.
 *
 * Half-open: calls go one at a time as probes; `closeAfter` successful probes in a row close the breaker (its window
 * starts empty), one failed probe opens it again, and a probe with no verdict (aborted by its caller) lets the next
 * call probe. Outcomes of calls let through before the breaker opened are not counted once it has.
 */
export class ServiceBreaker {
  /** The breaker as steps around each attempt (`./chain`): a closed breaker counts the outcome, with no promise of its own. */
  readonly policy: PolicySteps
  /** The same as a `Policy` function, for the policy that picks one of several upstreams per attempt (`./upstreams`). */
  readonly asFunction: Policy
  /** The upstream's origin, when this breaker is one of several. */
  readonly upstream: string | undefined
  private readonly name: string
  private readonly log: Logger
  private readonly service: ServiceRuntime
  private opossum: CircuitBreaker | undefined = undefined
  private readonly counts: RollingCounts
  private readonly window: number
  private readonly resetAfter: number
  private readonly closeAfter: number
  private readonly minimumRequests: number
  private readonly errorPercentage: number
  /** Closed: never opened, or opossum said so last (its events set it): one field read per attempt on the hot path. */
  private closed = true
  private shutDown = false
  private probing = false
  /** Counts state changes and resets: a probe's outcome counts only in the generation it started in. */
  private generation = 0
  /** Attempts let through a closed breaker and not settled yet (the window counts outcomes). */
  private inFlight = 0
  /** Successful probes still needed to close a half-open breaker. */
  private probesLeft = 0
  private openedAt = 0
  private opens = 0
  private rejected = 0
  private resetting = false
  /** Set while a failed probe opens the breaker again: its log line says so. */
  private reopening = false
  /** Set while `trip()` opens the breaker: its message says the opening came from elsewhere. */
  private tripping = false
  /** The reason of the failure that opens the breaker, for the log line. */
  private lastFailure = 'unknown'

  constructor (service: ServiceRuntime, upstream?: string) {
    const o = service.options.breaker as NonNullable<ServiceRuntime['options']['breaker']>
    this.resetAfter = o.resetAfter
    this.closeAfter = o.closeAfter
    this.minimumRequests = o.minimumRequests
    this.errorPercentage = o.errorPercentage
    this.window = o.window
    this.counts = new RollingCounts(o.window, o.windowBuckets)
    this.upstream = upstream
    this.service = service
    this.name = upstream === undefined ? service.name : `${service.name} ${upstream}`
    // The service's logger carries `{ service }`; the breaker of one upstream adds `{ upstream }` and names it.
    this.log = upstream === undefined ? service.log : service.log.child({ upstream })

    const enter = (ctx: CallContext, next: Next): Promise<HttpResponse> | undefined => {
      if (this.closed) {
        // The attempt goes on; `counted` / `countedError` get its outcome.
        this.inFlight++
        return undefined
      }
      if (this.shutDown) return Promise.reject(closedError(ctx))
      if (this.halfOpen && !this.probing) {
        this.probing = true
        // A probe's outcome is judged by the generation it started in: one still out after a reset() or a re-opening
        // is no longer the probe.
        const generation = this.generation
        return attempt(ctx, next).then(
          (res) => this.probed(res, generation),
          (err: unknown) => this.probeFailed(err, generation))
      }
      this.rejected++
      return Promise.reject(this.openError(ctx))
    }
    this.policy = { enter, response: this.counted, failure: this.countedError }
    this.asFunction = stepsAsPolicy(this.policy)
  }

  /**
   * opossum's breaker, made when this one first opens: a closed breaker needs none of it (1,000 idle services keep
   * 1,000 fewer opossum breakers, about 4.4 KB each), and it then holds the state until shutdown.
   */
  private machine (): CircuitBreaker {
    if (this.opossum !== undefined) return this.opossum
    const breaker = new CircuitBreaker(neverFired, {
      name: this.name,
      resetTimeout: this.resetAfter,
      timeout: false,
      // opossum's own window is never fed (nothing fires): the smallest one, rotated by nothing.
      rollingCountBuckets: 1,
      rollingCountTimeout: this.window,
      rotateBucketController: kNoRotation,
      rollingPercentilesEnabled: false,
      enableSnapshots: false
    })
    // The log lines are the diagnostics log subscriber's (`../diagnostics/log-subscriber`).
    breaker.on('open', () => {
      this.closed = false
      this.probing = false
      this.generation++
      this.openedAt = performance.now()
      this.opens++
      // A re-opening follows one probe: the window's counts are from before the first opening, so none are given.
      const { calls, failures } = this.reopening ? { calls: undefined, failures: undefined } : this.counts.totals()
      publishBreakerState(this.service, this.log, this.upstream, 'open', failures, calls, this.lastFailure, this.resetAfter, this.reopening,
        undefined, this.tripping)
    })
    breaker.on('halfOpen', () => {
      this.probing = false
      this.generation++
      this.probesLeft = this.closeAfter
      publishBreakerState(this.service, this.log, this.upstream, 'halfOpen', undefined, undefined, undefined, undefined, false, this.closeAfter)
    })
    breaker.on('close', () => {
      this.closed = true
      this.probing = false
      this.generation++
      this.counts.clear()
      if (!this.resetting) publishBreakerState(this.service, this.log, this.upstream, 'closed')
    })
    this.opossum = breaker
    return breaker
  }

  private get halfOpen (): boolean {
    return this.opossum?.halfOpen === true
  }

  /** A closed breaker's attempt answered: a failure status counts as a failure, any other as a success. */
  private readonly counted = (res: HttpResponse): HttpResponse => {
    this.inFlight--
    if (!this.closed) return res
    if (isFailureStatus(res.status)) this.failed(`status ${res.status}`)
    else this.counts.success()
    return res
  }

  private readonly countedError = (err: unknown): never => {
    this.inFlight--
    if (this.closed && countsAsFailure(err)) this.failed(failureReason(err))
    throw err
  }

  private failed (reason: string): void {
    const { calls, failures } = this.counts.failure()
    if (calls >= this.minimumRequests && failures * 100 > this.errorPercentage * calls) {
      this.lastFailure = reason
      this.machine().open()
    }
  }

  private probed (res: HttpResponse, generation: number): HttpResponse {
    if (generation !== this.generation || this.shutDown) return res
    if (isFailureStatus(res.status)) this.probeFailedWith(`status ${res.status}`)
    else this.probeSucceeded()
    return res
  }

  private probeFailed (err: unknown, generation: number): never {
    if (generation !== this.generation || this.shutDown) throw err
    if (countsAsFailure(err)) this.probeFailedWith(failureReason(err))
    else this.probing = false // no verdict: the next call probes
    throw err
  }

  private probeSucceeded (): void {
    this.probing = false
    if (--this.probesLeft <= 0) this.machine().close()
  }

  private probeFailedWith (reason: string): void {
    this.lastFailure = reason
    this.reopening = true
    try {
      this.machine().open()
    } finally {
      this.reopening = false
    }
  }

  /**
   * Opens a closed breaker because something outside this process saw the upstream fail (`breaker.shared`: another
   * instance's breaker opened); `reason` is the log line's `lastFailure`. From there it is this breaker's own: it
   * half-opens after `resetAfter` and probes. `upstream` is the breaker's (`undefined` for a service's only one).
   * Returns `false`, doing nothing, when it is another's, not closed, or shut down.
   */
  trip (upstream: string | undefined, reason: string): boolean {
    if (upstream !== this.upstream || !this.closed || this.shutDown) return false
    this.lastFailure = reason
    this.tripping = true
    try {
      this.machine().open()
    } finally {
      this.tripping = false
    }
    return true
  }

  /** `closed` also once shut down (the service is closed: nothing is open upstream), as opossum says of itself. */
  get state (): BreakerState {
    return this.closed || this.shutDown ? 'closed' : this.halfOpen ? 'halfOpen' : 'open'
  }

  /** Whether a call may go through now: closed, or half-open with no probe in flight (the call is the probe). */
  get passes (): boolean {
    return this.closed || (this.halfOpen && !this.probing && !this.shutDown)
  }

  get isShutdown (): boolean {
    return this.shutDown
  }

  /** Milliseconds until an open breaker lets a probe through (0 when it is not open). */
  get retryAfterMs (): number {
    return this.opossum?.opened === true ? Math.max(0, this.resetAfter - (performance.now() - this.openedAt)) : 0
  }

  stats (): BreakerStats {
    const { calls, failures } = this.counts.totals()
    return {
      state: this.state,
      opens: this.opens,
      // Counts over the rolling window of a closed breaker (it starts empty each time the breaker closes): the
      // attempts it let through, those still in flight included, and the outcomes of those that settled.
      calls: calls + this.inFlight,
      successes: calls - failures,
      failures,
      // Since start-up: calls refused while open (one breaker of several never refuses: it is not picked).
      rejected: this.rejected,
      retryAfterMs: Math.ceil(this.retryAfterMs)
    }
  }

  /** Stops opossum's open-period timer; later calls fail with `ClientClosedError`. */
  shutdown (): void {
    this.closed = false
    this.shutDown = true
    this.opossum?.shutdown()
  }

  /**
   * Closes the breaker (quietly: no log line), empties its window and zeroes its counters, as if it had just been
   * made. A call in flight still settles through it and counts in the new window. A shut-down breaker stays so.
   */
  reset (): void {
    if (this.shutDown) return
    this.resetting = true
    try {
      this.opossum?.close()
    } finally {
      this.resetting = false
    }
    this.counts.clear()
    this.probing = false
    this.generation++
    this.openedAt = 0
    this.opens = 0
    this.rejected = 0
    this.lastFailure = 'unknown'
  }

  private openError (ctx: CallContext): Error {
    const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
    const wait = this.retryAfterMs
    const why = this.halfOpen ? 'half-open, a probe is in flight' : `half-open in ${Math.ceil(wait)} ms`
    const e = stamp(new CircuitOpenError(`${describe(target)}: circuit breaker is open (${why})`), target)
    // A probe in flight may settle any moment; Retry-After has whole seconds, so at least 1.
    return withRetryAfter(e, Math.max(1, wait / 1000))
  }
}

/**
 * A failure the breaker counts: a timeout, a connection or TLS failure (`TransportError`), unless the timeout's limit
 * was the caller's (a call's own `timeout`, the inbound request's deadline: see `markCallerTimeout`).
 */
function countsAsFailure (err: unknown): boolean {
  return err instanceof TransportError && !isCallerTimeout(err)
}

/** Runs the rest of the chain; a policy below that throws instead of rejecting rejects here, so no state is left half set. */
function attempt (ctx: CallContext, next: Next): Promise<HttpResponse> {
  try {
    return next(ctx)
  } catch (err) {
    return Promise.reject(err)
  }
}

function closedError (ctx: CallContext): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  return stamp(new ClientClosedError(`${describe(target)}: service client is closed`), target)
}


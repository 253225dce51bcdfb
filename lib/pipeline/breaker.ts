import { performance } from 'node:perf_hooks'
import CircuitBreaker from 'opossum'
import {
  CircuitOpenError,
  ClientClosedError,
  RequestAbortedError,
  TimeoutError,
  TransportError,
  describe,
  stamp,
  withRetryAfter
} from '../errors'
import type { HttpResponse } from '../response'
import { isFailureStatus } from './failure-status'
import { kBreakerView, type BreakerState, type BreakerView, type CallContext, type Next, type Policy, type PolicyFactory, type ServiceRuntime } from './types'
import { UpstreamBreakers, breakerUpstreams } from './upstreams'

export type { BreakerState } from './types'

/**
 * A response whose status counts as a failure (5xx, 408, 429). The action rejects with it so opossum counts it;
 * the policy unwraps it, so the caller and the retry policy above still get the response itself. Not an Error:
 * no stack trace is captured for what is only a carrier.
 */
class CountedResponse {
  readonly response: HttpResponse
  constructor (response: HttpResponse) {
    this.response = response
  }
}

function checkStatus (res: HttpResponse): HttpResponse {
  if (isFailureStatus(res.status)) throw new CountedResponse(res)
  return res
}

/** Created once for all calls: opossum passes `fire(ctx, next)`'s arguments on, so no closure per call. */
function action (ctx: CallContext, next: Next): Promise<HttpResponse> {
  return next(ctx).then(checkStatus)
}

/** Hands a counted response back to the caller; other failures pass on. */
function unwrap (err: unknown): HttpResponse {
  if (err instanceof CountedResponse) return err.response
  throw err
}

/**
 * Failures that say something about the upstream: timeouts, connection and TLS failures. The total timeout counts
 * too: without an attempt timeout it is what ends a call to a hung upstream, and opossum would count a filtered
 * error as a success, so a hung upstream would keep the breaker closed for ever.
 */
function countedError (err: unknown): boolean {
  return err instanceof CountedResponse || err instanceof TransportError
}

/** What a failure the breaker counted was, for the log line of its opening: `status 503`, `ECONNREFUSED`, `timeout headers`. */
function failureReason (err: unknown): string {
  if (err instanceof CountedResponse) return `status ${err.response.status}`
  if (err instanceof TimeoutError) return `timeout ${err.phase}`
  const { errno, code } = err as { errno?: unknown, code?: unknown }
  return typeof errno === 'string' ? errno : typeof code === 'string' ? code : 'error'
}

/** Outcomes that tell nothing either way: the caller gave up, or the client is closing. */
function noVerdict (err: unknown): boolean {
  return err instanceof RequestAbortedError || err instanceof ClientClosedError
}

/**
 * One opossum breaker: a service's, or with `upstream` one upstream's of a service with several (see `./upstreams`,
 * which then picks the upstream and calls `fire`; `policy` is for the one-breaker case).
 */
export class ServiceBreaker {
  readonly policy: Policy
  /** The upstream's origin, when this breaker is one of several. */
  readonly upstream: string | undefined
  private readonly breaker: CircuitBreaker<[CallContext, Next], HttpResponse>
  private readonly resetAfter: number
  private readonly windowBuckets: number
  private openedAt = 0
  private opens = 0
  private rejected = 0
  /** The reason of the last failure counted (see `failureReason`), for the log line of the opening it causes. */
  private lastFailure: string | undefined = undefined
  private resetting = false

  constructor (service: ServiceRuntime, upstream?: string) {
    const o = service.options.breaker as NonNullable<ServiceRuntime['options']['breaker']>
    this.resetAfter = o.resetAfter
    this.windowBuckets = o.windowBuckets
    this.upstream = upstream
    const breaker: CircuitBreaker<[CallContext, Next], HttpResponse> = new CircuitBreaker(action, {
      name: upstream === undefined ? service.name : `${service.name} ${upstream}`,
      // Attempt timeouts abort the request itself; opossum's own timeout would only stop waiting for it.
      timeout: false,
      errorThresholdPercentage: o.errorPercentage,
      volumeThreshold: o.minimumRequests,
      rollingCountTimeout: o.window,
      rollingCountBuckets: o.windowBuckets,
      resetTimeout: o.resetAfter,
      // Per-call latency arrays and a snapshot timer per breaker are costs nobody here reads.
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      // `true` = not a failure. opossum counts a filtered error as a success, which closes a half-open breaker:
      // right for a 4xx (the upstream answered), wrong for a probe the caller aborted, which re-opens it instead.
      // opossum calls it for failures only: noting the reason costs a successful call nothing.
      errorFilter: (err: unknown) => {
        if (!countedError(err) && !(breaker.halfOpen && noVerdict(err))) return true
        this.lastFailure = failureReason(err)
        return false
      }
    })
    this.breaker = breaker
    // The service's logger carries `{ service }`; the breaker of one upstream adds `{ upstream }` and names it.
    const log = upstream === undefined ? service.log : service.log.child({ upstream })
    const of = upstream === undefined ? '' : ` of ${upstream}`
    const failFast = upstream === undefined ? 'calls fail fast' : 'calls go to the other upstreams'
    breaker.on('open', () => {
      this.openedAt = performance.now()
      this.opens++
      const s = breaker.stats
      const lastFailure = this.lastFailure
      log.warn({ breaker: 'open', failures: s.failures, calls: s.fires, resetAfter: o.resetAfter, lastFailure },
        `circuit breaker${of} opened after ${s.failures} failures of ${s.fires} calls (last: ${lastFailure ?? 'unknown'}): ${failFast} for ${o.resetAfter} ms`)
    })
    breaker.on('halfOpen', () => log.info({ breaker: 'halfOpen' }, `circuit breaker${of} half-open: the next call is a probe`))
    breaker.on('close', () => {
      if (!this.resetting) log.info({ breaker: 'closed' }, `circuit breaker${of} closed`)
    })

    // opossum's own open check, done here so a refused call costs no fire() and the error can name the call
    // without a closure per call; past it, fire() always runs the action (a half-open breaker's probe included).
    this.policy = (ctx: CallContext, next: Next): Promise<HttpResponse> => {
      if (!breaker.closed) {
        if (breaker.isShutdown) return Promise.reject(closedError(ctx))
        if (!breaker.pendingClose) {
          this.rejected++
          return Promise.reject(this.openError(ctx))
        }
      }
      return breaker.fire(ctx, next).then(undefined, unwrap)
    }
  }

  get state (): BreakerState {
    const b = this.breaker
    return b.opened ? 'open' : b.halfOpen ? 'halfOpen' : 'closed'
  }

  /** Whether a call may go through now: closed, or half-open with no probe in flight yet (the call is the probe). */
  get passes (): boolean {
    const b = this.breaker
    return b.closed || (b.pendingClose && !b.isShutdown)
  }

  get isShutdown (): boolean {
    return this.breaker.isShutdown
  }

  /** Runs the rest of the chain through the breaker; a counted response comes back as the response. */
  fire (ctx: CallContext, next: Next): Promise<HttpResponse> {
    return this.breaker.fire(ctx, next).then(undefined, unwrap)
  }

  /** Milliseconds until an open breaker lets a probe through (0 when it is not open). */
  get retryAfterMs (): number {
    return this.breaker.opened ? Math.max(0, this.resetAfter - (performance.now() - this.openedAt)) : 0
  }

  stats (): BreakerStats {
    const s = this.breaker.stats
    return {
      state: this.state,
      opens: this.opens,
      // Counts over the rolling window, of the calls that reached the upstream.
      calls: s.fires,
      successes: s.successes,
      failures: s.failures,
      // Since start-up: calls refused while open (one breaker of several never refuses: it is not picked).
      rejected: this.rejected,
      retryAfterMs: Math.ceil(this.retryAfterMs)
    }
  }

  /** Stops opossum's window timer. */
  shutdown (): void {
    this.breaker.shutdown()
  }

  /**
   * Closes the breaker (quietly: no log line), empties its rolling window and zeroes its counters, as if it had just
   * been made. A call in flight still settles through it and counts in the new window. A shut-down breaker stays so.
   */
  reset (): void {
    const b = this.breaker
    if (b.isShutdown) return
    this.resetting = true
    try {
      b.close()
    } finally {
      this.resetting = false
    }
    // opossum has no reset of its window; rotating every bucket out of it is one (each rotation starts an empty one).
    // `rotateBucket` is the function opossum hands to a `rotateBucketController`: public, if little documented.
    const status = b.status as unknown as { rotateBucket?: () => void }
    if (typeof status.rotateBucket !== 'function') throw new Error('opossum\'s Status has no rotateBucket(): a breaker\'s window cannot be emptied')
    for (let i = 0; i < this.windowBuckets; i++) status.rotateBucket()
    this.openedAt = 0
    this.opens = 0
    this.rejected = 0
    this.lastFailure = undefined
  }

  private openError (ctx: CallContext): Error {
    const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
    const wait = this.retryAfterMs
    const why = this.breaker.halfOpen ? 'half-open, a probe is in flight' : `half-open in ${Math.ceil(wait)} ms`
    const e = stamp(new CircuitOpenError(`${describe(target)}: circuit breaker is open (${why})`), target)
    // A probe in flight may settle any moment; Retry-After has whole seconds, so at least 1.
    return withRetryAfter(e, Math.max(1, wait / 1000))
  }
}

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

function closedError (ctx: CallContext): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  return stamp(new ClientClosedError(`${describe(target)}: service client is closed`), target)
}

/**
 * What a service's breaker policy is: one breaker, or one per upstream. As a `BreakerView` (`state`, `open` only when
 * no call can get through, with several upstreams when all of them are open; `retryAfterMs`), it is what the rest
 * of the service reads of it.
 */
export interface Breakers extends BreakerView {
  readonly policy: Policy
  stats: () => unknown
  shutdown: () => void
  reset: () => void
}

/** The breaker(s) of a service, when it has any. */
export function breakerOf (service: ServiceRuntime): Breakers | undefined {
  return service.sharedIf<Breakers>(kBreakerView)
}

/**
 * Circuit breaker (opossum), one per service, inside retry so it sees every attempt. Counts 5xx, 408 and 429
 * responses, timeouts and connection and TLS failures; not 4xx or the caller's aborts. Open: calls fail at once with
 * `CircuitOpenError` (503, `Retry-After` = seconds until half-open) and never reach the upstream; after `resetAfter`
 * one probe passes, and its success closes the breaker.
 *
 * With several `baseUrl`s there is one breaker per upstream, and this policy picks the upstream of each attempt
 * (see `./upstreams`): the service's dispatcher is then an Agent that is told the origin, not a BalancedPool.
 */
export const breaker: PolicyFactory = (service) => {
  if (service.options.breaker === undefined) return undefined
  return service.shared(kBreakerView, (): Breakers => {
    const origins = breakerUpstreams(service.options)
    const created: Breakers = origins === undefined
      ? new ServiceBreaker(service)
      : new UpstreamBreakers(origins.map((origin) => new ServiceBreaker(service, origin)))
    service.addStats('breaker', () => created.stats())
    service.onClose?.(() => created.shutdown())
    service.onReset?.(() => created.reset())
    return created
  }).policy
}

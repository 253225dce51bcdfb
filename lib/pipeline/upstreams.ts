import { CircuitOpenError, describe, stamp, withRetryAfter } from '../errors'
import type { HttpResponse } from '../response'
import type { BreakerStats, ServiceBreaker } from './service-breaker'
import type { BreakerState, CallContext, Next, Policy } from './types'

/** One upstream as a call sees it (`ctx.upstream`): its origin, and where it sits in the round robin. */
class Upstream {
  readonly origin: string
  readonly index: number
  readonly breaker: ServiceBreaker

  constructor (breaker: ServiceBreaker, index: number) {
    this.origin = breaker.upstream as string
    this.index = index
    this.breaker = breaker
  }
}

/**
 * The breakers of a service with several upstreams, one per upstream, and the policy that picks the upstream of each
 * attempt: round robin over the upstreams whose breaker lets a call through (closed, or half-open with no probe in
 * flight, when the call is the probe). The pick is set on `ctx.upstream`, which the transport sends to, and that
 * upstream's breaker counts the attempt. A retried attempt starts looking after the upstream the previous attempt
 * went to, so a retry goes to the next healthy upstream even while other calls move the round robin on.
 *
 * When no upstream lets a call through, the call fails at once with `CircuitOpenError`, whose `Retry-After` is the
 * shortest wait until some upstream half-opens.
 */
export class UpstreamBreakers {
  readonly policy: Policy
  private readonly upstreams: Upstream[]
  private cursor = 0
  private rejected = 0

  constructor (breakers: ServiceBreaker[]) {
    const upstreams = breakers.map((b, i) => new Upstream(b, i))
    this.upstreams = upstreams
    const n = upstreams.length
    this.policy = (ctx: CallContext, next: Next): Promise<HttpResponse> => {
      const previous = ctx.upstream
      let i = previous instanceof Upstream ? previous.index + 1 : this.cursor
      for (let tried = 0; tried < n; tried++, i++) {
        if (i >= n) i = 0
        const u = upstreams[i]
        if (u.breaker.passes) {
          this.cursor = i + 1 < n ? i + 1 : 0
          ctx.upstream = u
          return u.breaker.asFunction(ctx, next)
        }
      }
      // A closed service: the breakers were shut down, and a shut-down breaker's own policy refuses as closed.
      if (upstreams[0].breaker.isShutdown) return upstreams[0].breaker.asFunction(ctx, next)
      this.rejected++
      return Promise.reject(this.openError(ctx))
    }
  }

  /**
   * `closed` while some upstream's breaker is closed, `halfOpen` while none is closed but some is half-open, and
   * `open` only when every upstream's breaker is open: then no call can get through.
   */
  get state (): BreakerState {
    let halfOpen = false
    for (const u of this.upstreams) {
      const s = u.breaker.state
      if (s === 'closed') return 'closed'
      if (s === 'halfOpen') halfOpen = true
    }
    return halfOpen ? 'halfOpen' : 'open'
  }

  /** Milliseconds until some upstream lets a call through again (0 when one does, or is probing). */
  get retryAfterMs (): number {
    let wait = Infinity
    for (const u of this.upstreams) {
      if (u.breaker.passes) return 0
      wait = Math.min(wait, u.breaker.retryAfterMs)
    }
    return wait
  }

  /**
   * The service's figures (`state` as above; `opens`, `calls`, `successes` and `failures` summed over the upstreams;
   * `rejected`: calls refused because every upstream was open; `retryAfterMs`: until some upstream lets calls
   * through) and each upstream's own breaker under `upstreams`, keyed by origin.
   */
  stats (): Record<string, unknown> {
    const upstreams: Record<string, Omit<BreakerStats, 'rejected'>> = {}
    let opens = 0
    let calls = 0
    let successes = 0
    let failures = 0
    for (const u of this.upstreams) {
      const { rejected: _none, ...s } = u.breaker.stats()
      upstreams[u.origin] = s
      opens += s.opens
      calls += s.calls
      successes += s.successes
      failures += s.failures
    }
    return {
      state: this.state,
      opens,
      calls,
      successes,
      failures,
      rejected: this.rejected,
      retryAfterMs: Math.ceil(this.retryAfterMs),
      upstreams
    }
  }

  shutdown (): void {
    for (const u of this.upstreams) u.breaker.shutdown()
  }

  /** Opens the breaker of the upstream `origin` (see `ServiceBreaker.trip`); `false` when there is none or it is not closed. */
  trip (origin: string | undefined, reason: string): boolean {
    return this.upstreams.find((u) => u.origin === origin)?.breaker.trip(origin, reason) ?? false
  }

  /** Resets every upstream's breaker (see `ServiceBreaker.reset`), the round robin and the count of refusals. */
  reset (): void {
    for (const u of this.upstreams) u.breaker.reset()
    this.cursor = 0
    this.rejected = 0
  }

  private openError (ctx: CallContext): Error {
    const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
    let wait = Infinity
    let probing = 0
    for (const u of this.upstreams) {
      if (u.breaker.state === 'open') wait = Math.min(wait, u.breaker.retryAfterMs)
      else probing++
    }
    const why = probing > 0
      ? `${probing} half-open with a probe in flight`
      : `the first half-opens in ${Math.ceil(wait)} ms`
    const e = stamp(new CircuitOpenError(
      `${describe(target)}: all ${this.upstreams.length} upstreams are open (circuit breakers; ${why})`), target)
    // Retry-After has whole seconds, so at least 1; a probe in flight may settle any moment.
    return withRetryAfter(e, Math.max(1, (probing > 0 ? 0 : wait) / 1000))
  }
}

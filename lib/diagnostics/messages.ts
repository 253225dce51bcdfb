/**
 * The messages of the diagnostics channels (`./channels`): public API, documented in the README. Each is built only
 * when its channel has a subscriber, as a small object of strings and numbers copied from the call (references, no
 * new strings but a redacted path when the path has a query). What a subscriber must not see stays out: header
 * values, bodies, query values (redacted), the service's options. `log` and `registry` are read from the call when
 * asked, so a message costs no logger.
 *
 * A subscriber that keeps a message keeps what it references (the call's message, for `call`): keep what you need.
 */
import { performance } from 'node:perf_hooks'
import { checkHeader } from '../call'
import { redactPath } from '../errors'
import type { BreakerState, CallContext, Logger, ServiceRuntime } from '../pipeline/types'
import { copyHeaders } from '../copy-headers'

/**
 * A call, as `tracing:fastify-http-services:call:*` publish it: the same object on every event of the call, and the
 * `call` of every other message about it, so a subscriber can key what it keeps per call by it (a `WeakMap`).
 */
export class CallMessage {
  /** The service's name. */
  readonly service: string
  /** The method the call was made with (a redirect may send later requests as GET: see `AttemptMessage.method`). */
  readonly method: string
  /**
   * The path as the caller wrote it, before `params` were filled in (`/users/:id`), without its query or fragment:
   * for span names and metrics.
   */
  readonly route: string
  /** The path and query the call was made with, base path included, query values redacted (`?token=***`). */
  readonly path: string
  /**
   * `performance.now()` when the call started; for a call that started before anything subscribed, when its first
   * message was built.
   */
  readonly startedAt: number
  /** Milliseconds from `startedAt` to the call's outcome: set before `asyncStart` and `error`. */
  duration: number | undefined = undefined
  /**
   * The status of the response the call ended with (set before `asyncStart`), also when the call throws it as
   * `HttpStatusError`; `undefined` when no response came.
   */
  status: number | undefined = undefined
  /**
   * Attempts the call made, retries and hedges included, as its outcome reports them (`HttpResponse.attempts`, an
   * error's `attempts`): set before `asyncStart`; `undefined` when the error does not say (no retry policy ran).
   */
  attempts: number | undefined = undefined
  /** What the call failed with (an error of this library: `name` and `code` say which): set before `error`. */
  error: unknown = undefined
  readonly #call: CallContext

  constructor (call: CallContext) {
    this.#call = call
    this.service = call.service.name
    this.method = call.method
    this.route = routeOf(call.route)
    this.path = redactPath(call.path)
    this.startedAt = performance.now()
  }

  /**
   * The registry the call's service belongs to (`fastify.httpServices`, or what `createHttpServices()` returned):
   * compare it with your app's to keep only its events when several apps share the process.
   */
  get registry (): object | undefined {
    return this.#call.service.registry
  }

  /** The call's logger: the inbound request's (its `reqId`) bound to `{ service }`, or the app's outside a request. */
  get log (): Logger {
    return this.#call.log
  }
}

/** What every message about one call has: the call's message, and its service, registry and logger. */
export abstract class CallEvent {
  /** The call's message (`CallMessage`): the same object for every message about the call. */
  readonly call: CallMessage

  constructor (call: CallMessage) {
    this.call = call
  }

  /** The service's name. */
  get service (): string {
    return this.call.service
  }

  /** The registry the call's service belongs to (see `CallMessage.registry`). */
  get registry (): object | undefined {
    return this.call.registry
  }

  /** The call's logger (see `CallMessage.log`). */
  get log (): Logger {
    return this.call.log
  }
}

/** A route as messages show it: up to its query or fragment, which may hold secrets (`/search?api_key=…`). */
function routeOf (route: string): string {
  // Most routes hold neither: two scans, no regex.
  if (route.indexOf('?') === -1 && route.indexOf('#') === -1) return route
  const end = route.search(/[?#]/)
  return end === -1 ? route : route.slice(0, end)
}

/** Headers a subscriber may not set: they would change where the request goes or how its body is framed. */
const kForbiddenHeaders = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect', 'te', 'keep-alive'])

/** @internal What `AttemptMessage.addHeader` changes: the dispatch options of the request about to be sent. */
export interface OutgoingRequest {
  headers: Record<string, string>
}

/**
 * One request on the wire (`attempt:start`, `:headers`, `:end`, `:error`): each retry, hedge and redirect hop is one.
 * The same object on the four events of the request.
 */
export class AttemptMessage extends CallEvent {
  /** 1-based number of the attempt within its call (retries and hedges count; redirect hops share their attempt's). */
  readonly attempt: number
  /** The method sent (a 303 redirect turns a POST into a GET). */
  readonly method: string
  /** The path and query sent, base path included, query values redacted. */
  readonly path: string
  /**
   * The upstream's origin (`http://10.0.0.7:8080`): the service's only one, or the one its breakers picked;
   * `undefined` when undici's balanced pool picks among several and does not say which.
   */
  readonly upstream: string | undefined
  /** `performance.now()` when the request was handed to undici. */
  readonly startedAt: number
  /** The response's status: set before `attempt:headers`. */
  status: number | undefined = undefined
  /** Milliseconds from `startedAt` to the response headers: set before `attempt:headers`. */
  timeToHeaders: number | undefined = undefined
  /** Milliseconds from `startedAt` to the end (the body read, for the *Json helpers) or the failure. */
  duration: number | undefined = undefined
  /**
   * What the request failed with, set before `attempt:error`: `TimeoutError` (with its `phase`), `ConnectionError`
   * (its `code`: `ECONNREFUSED` …), `TlsError`, `RequestAbortedError`, `ResponseTooLargeError` …
   */
  error: unknown = undefined
  /** The request's dispatch options while `attempt:start` is published, then `null`. */
  #request: OutgoingRequest | null
  #ownHeaders = false

  constructor (call: CallMessage, ctx: CallContext, upstream: string | undefined, request: OutgoingRequest, startedAt: number) {
    super(call)
    this.attempt = ctx.attempt
    this.method = ctx.method
    this.path = redactPath(ctx.path)
    this.upstream = upstream
    this.#request = request
    this.startedAt = startedAt
  }

  /**
   * Adds (or replaces) a header of this request: for subscribers of `attempt:start`, while it is published (a tracer
   * injecting `traceparent`). The header goes with this request only: the next attempt is published afresh. Returns
   * `false` and sets nothing once the request is sent, for a name that is not a token, a value with CR, LF or NUL,
   * and for the headers that frame or route a request (`host`, `content-length`, `transfer-encoding`, `connection`,
   * `upgrade`, `expect`, `te`, `keep-alive`): it never throws, since an error thrown in a subscriber is an uncaught
   * exception.
   */
  addHeader (name: string, value: string): boolean {
    const request = this.#request
    if (request === null) return false
    const lower = String(name).toLowerCase()
    const text = String(value)
    if (kForbiddenHeaders.has(lower)) return false
    try {
      checkHeader(this.service, lower, text)
    } catch {
      return false
    }
    // The call's header object may be shared with other calls: this request gets a copy of its own.
    if (!this.#ownHeaders) {
      request.headers = copyHeaders(request.headers)
      this.#ownHeaders = true
    }
    request.headers[lower] = text
    return true
  }

  /** @internal The request is sent: `addHeader` has nothing left to change. */
  sent (): void {
    this.#request = null
  }
}

/** Where the wait before a retry comes from. */
export type RetryDelaySource = 'backoff' | 'delay' | 'retry-after' | 'x-ratelimit-reset'

/** Details of the retry about to be scheduled, or refused, of one call (what the retry policy passes). */
export abstract class RetryEvent extends CallEvent {
  /** The number of the attempt that failed. */
  readonly attempt: number
  /** How many attempts the call may make in all (`retry.attempts` + 1). */
  readonly maxAttempts: number
  /** Why the attempt failed in a way that may be retried: `status 503`, `ECONNRESET`, `timeout headers` … */
  readonly reason: string
  /** The method of the failed attempt. */
  readonly method: string
  /** The path of the failed attempt, query values redacted. */
  readonly path: string
  /** The upstream of the failed attempt (see `AttemptMessage.upstream`). */
  readonly upstream: string | undefined

  constructor (call: CallMessage, ctx: CallContext, upstream: string | undefined, attempt: number, maxAttempts: number, reason: string) {
    super(call)
    this.attempt = attempt
    this.maxAttempts = maxAttempts
    this.reason = reason
    this.method = ctx.method
    this.path = redactPath(ctx.path)
    this.upstream = upstream
  }
}

/** `retry:scheduled`: the call is sent again in `delayMs`. */
export class RetryScheduledMessage extends RetryEvent {
  /** Milliseconds until the next attempt. */
  readonly delayMs: number
  /**
   * Where the wait comes from: the `backoff` (exponential, jittered), the `delay` option, or the upstream's
   * `retry-after` or `x-ratelimit-reset` header.
   */
  readonly delaySource: RetryDelaySource

  constructor (
    call: CallMessage, ctx: CallContext, upstream: string | undefined, attempt: number, maxAttempts: number, reason: string,
    delayMs: number, delaySource: RetryDelaySource
  ) {
    super(call, ctx, upstream, attempt, maxAttempts, reason)
    this.delayMs = delayMs
    this.delaySource = delaySource
  }
}

/**
 * Why a retry that the failure allows is not made: no `attempts` left; the upstream asks for a wait longer than
 * `maxRetryAfter` (`retry-after`); the wait would pass the call's `deadline`; the `breaker` stays open longer than the
 * wait; the retry `budget` is spent.
 */
export type RetryRefusal = 'attempts' | 'retry-after' | 'deadline' | 'breaker' | 'budget'

/** `retry:refused`: the call ends with the failed attempt's outcome, though the failure may be retried. */
export class RetryRefusedMessage extends RetryEvent {
  /** What refused it. */
  readonly refusal: RetryRefusal
  /** The wait that was refused (ms): the upstream's (`retry-after`) or the computed one (`deadline`); else `undefined`. */
  readonly delayMs: number | undefined
  /** Milliseconds until the open breaker lets a probe through (`breaker`); else `undefined`. */
  readonly retryAfterMs: number | undefined

  constructor (
    call: CallMessage, ctx: CallContext, upstream: string | undefined, attempt: number, maxAttempts: number, reason: string,
    refusal: RetryRefusal, delayMs: number | undefined, retryAfterMs: number | undefined
  ) {
    super(call, ctx, upstream, attempt, maxAttempts, reason)
    this.refusal = refusal
    this.delayMs = delayMs
    this.retryAfterMs = retryAfterMs
  }
}

/** `breaker:state`: a circuit breaker of a service (or of one of its upstreams) changed state. Belongs to no call. */
export class BreakerStateMessage {
  /** The service's name. */
  readonly service: string
  /** The upstream whose breaker this is, when the service keeps one per upstream; else `undefined`. */
  readonly upstream: string | undefined
  /** The new state. */
  readonly state: BreakerState
  /** `open`: failures counted in the window that opened it; else `undefined`. */
  readonly failures: number | undefined
  /** `open`: calls counted in that window; else `undefined`. */
  readonly calls: number | undefined
  /** `open`: the last failure counted (`status 503`, `ECONNREFUSED`, `timeout headers`); else `undefined`. */
  readonly lastFailure: string | undefined
  /** `open`: milliseconds until it half-opens (`breaker.resetAfter`); else `undefined`. */
  readonly resetAfter: number | undefined
  /** `open`: `true` when a failed probe opened it again (then `lastFailure` is the probe's); else `false`. */
  readonly reopened: boolean
  /** `halfOpen`: successful probes in a row that close it (`breaker.closeAfter`); else `undefined`. */
  readonly probes: number | undefined
  readonly #service: ServiceRuntime
  readonly #log: Logger
  readonly #remote: boolean

  constructor (
    service: ServiceRuntime, log: Logger, upstream: string | undefined, state: BreakerState,
    failures?: number, calls?: number, lastFailure?: string, resetAfter?: number, reopened = false, probes?: number,
    remote = false
  ) {
    this.#service = service
    this.#log = log
    this.#remote = remote
    this.service = service.name
    this.upstream = upstream
    this.state = state
    this.failures = failures
    this.calls = calls
    this.lastFailure = lastFailure
    this.resetAfter = resetAfter
    this.reopened = reopened
    this.probes = probes
  }

  /** The registry the service belongs to (see `CallMessage.registry`). */
  get registry (): object | undefined {
    return this.#service.registry
  }

  /** The service's logger (bound to `{ service }`, and `{ upstream }` for an upstream's breaker). */
  get log (): Logger {
    return this.#log
  }

  /**
   * `open`: `true` when another instance's opening, received through Redis (`breaker.shared`), opened it (then
   * `lastFailure` is that instance's, and `failures` and `calls` this one's); else `false`.
   */
  get remote (): boolean {
    return this.#remote
  }
}

/** `bulkhead:queued`, `:admitted`, `:rejected`: the service's bulkhead as it was when it made the call wait, let it in or refused it. */
export class BulkheadMessage extends CallEvent {
  /** Calls holding a slot. */
  readonly active: number
  /** Calls waiting for a slot, this one included when it waits. */
  readonly queued: number
  readonly maxConcurrent: number
  readonly maxQueue: number
  /** Milliseconds the call waited for its slot (`admitted`, and `rejected` for `timeout`); 0 otherwise. */
  readonly waited: number
  /** `rejected`: `full` (no room in the queue) or `timeout` (no slot within `queueTimeout`); else `undefined`. */
  readonly reason: 'full' | 'timeout' | undefined

  constructor (
    call: CallMessage, active: number, queued: number, maxConcurrent: number, maxQueue: number, waited: number,
    reason: 'full' | 'timeout' | undefined
  ) {
    super(call)
    this.active = active
    this.queued = queued
    this.maxConcurrent = maxConcurrent
    this.maxQueue = maxQueue
    this.waited = waited
    this.reason = reason
  }
}

/** `rate-limit:delayed` and `rate-limit:rejected`: the client-side rate limiter made a call wait, or refused it. */
export class RateLimitMessage extends CallEvent {
  /** Milliseconds until the call's permit (`delayed`: how long it waits; `rejected`: the wait it would have needed). */
  readonly delayMs: number
  /** The longest the call could wait: `rateLimit.maxWait`, or less when its deadline is nearer. */
  readonly maxWait: number

  constructor (call: CallMessage, delayMs: number, maxWait: number) {
    super(call)
    this.delayMs = delayMs
    this.maxWait = maxWait
  }
}

/** `hedge:fired`: another attempt of a call was sent, no answer having come within the hedge delay. */
export class HedgeFiredMessage extends CallEvent {
  /** The new attempt's number (see `AttemptMessage.attempt`). */
  readonly attempt: number
  /** Hedges sent for the call so far, this one included. */
  readonly hedges: number
  /** The hedge delay (ms): how long the call waited for an answer before this one. */
  readonly delayMs: number

  constructor (call: CallMessage, attempt: number, hedges: number, delayMs: number) {
    super(call)
    this.attempt = attempt
    this.hedges = hedges
    this.delayMs = delayMs
  }
}

/** `fallback:served`: the call failed and its fallback answered instead. */
export class FallbackServedMessage extends CallEvent {
  /** What the call failed with (an error of this library: `name` and `code` say which). */
  readonly error: unknown
  /** The status of the failed response, when a failure status (not an error) called for the fallback. */
  readonly status: number | undefined

  constructor (call: CallMessage, error: unknown, status: number | undefined) {
    super(call)
    this.error = error
    this.status = status
  }
}

/**
 * `cache:served`: a call of a service with `cache` got its response, and what the cache made of it. For `stale`
 * because the upstream failed, `error` or `upstreamStatus` says how it failed.
 */
export class CacheMessage extends CallEvent {
  /** `hit`, `revalidated`, `miss` or `stale` (see `HttpResponse.cache`). */
  readonly cache: 'hit' | 'revalidated' | 'miss' | 'stale'
  /** Seconds since the entry served was stored (its `Age`); `undefined` for a `miss`. */
  readonly age: number | undefined
  /** The upstream's failure a stale entry stands in for (`stale` under `staleIfError` / `stale-if-error`). */
  readonly error: unknown
  /** The upstream's 5xx a stale entry stands in for. */
  readonly upstreamStatus: number | undefined

  constructor (call: CallMessage, cache: CacheMessage['cache'], age: number | undefined, error: unknown, upstreamStatus: number | undefined) {
    super(call)
    this.cache = cache
    this.age = age
    this.error = error
    this.upstreamStatus = upstreamStatus
  }
}

/**
 * What the service, the transport and the policies call to publish on the diagnostics channels (`./channels`). Each
 * `publish*` function checks that its channel has a subscriber before it builds anything: while nobody subscribes, a
 * call costs one `hasSubscribers` read per event. The call's and the attempts' events are on the hot path: there the
 * caller checks `callChannel.hasSubscribers` / `attemptObserved()` itself and takes a separate, published path.
 */
import { performance } from 'node:perf_hooks'
import type { HttpResponse } from '../response'
import type { BreakerState, CallContext, Logger, Outcome, ServiceRuntime } from '../pipeline/types'
import {
  attemptEnd, attemptError, attemptHeaders, attemptStart, breakerState, bulkheadAdmitted, bulkheadQueued, bulkheadRejected,
  cacheServed, callChannel, fallbackServed, hedgeFired, rateLimitDelayed, rateLimitRejected, retryRefused, retryScheduled
} from './channels'
import {
  AttemptMessage, BreakerStateMessage, BulkheadMessage, CacheMessage, CallMessage, FallbackServedMessage, HedgeFiredMessage,
  RateLimitMessage, RetryRefusedMessage, RetryScheduledMessage, type OutgoingRequest, type RetryDelaySource, type RetryRefusal
} from './messages'

/*
 * Clock reads shared by events of one synchronous run. `performance.now()` is a good part of what publishing costs
 * (about 35 ns a read on the bench's VM, five reads per call published). Two pairs of events are one instant but for
 * the synchronous code between them, and share one reading:
 * - a call's first attempt starts while the call's `start` is still running (`runCallStart`, `startingCall`);
 * - a call whose attempt's end is reported straight up the chain ends inside that report (`reportAttemptEnd`,
 *   `endingCall`).
 * Anything in between that waits (a queue, a promise stage, a retry) puts the later event in another run: it reads
 * the clock.
 */
let startingCall: CallMessage | undefined
let endingCall: CallMessage | undefined
let endedAt = 0

/**
 * The call's message: made on first need and kept on the call (`ctx.call`, which views of it share), so every
 * message about one call has the same `call`.
 */
export function callMessageOf (ctx: CallContext): CallMessage {
  const call = ctx.call
  let message = call.diagnostics as CallMessage | undefined
  if (message === undefined) {
    message = new CallMessage(call)
    call.diagnostics = message
  }
  return message
}

/**
 * The upstream an attempt of `ctx` goes (or went) to: the one its breakers picked, else the service's only origin;
 * `undefined` for a balanced pool over several, which does not say which upstream answered.
 */
export function upstreamOf (ctx: CallContext): string | undefined {
  if (ctx.upstream !== undefined) return ctx.upstream.origin
  const origins = ctx.service.options.origins
  for (const origin of origins) if (origin !== origins[0]) return undefined
  return origins[0]
}

// The call: `HttpService.run` publishes it while `callChannel.hasSubscribers`.

/** A call starts while its TracingChannel has subscribers: its message, new (the caller publishes `start` with it). */
export function startCall (ctx: CallContext): CallMessage {
  const message = new CallMessage(ctx.call)
  ctx.call.diagnostics = message
  return message
}

/**
 * Publishes the call's `start` around `run(ctx, out)` (the call's chain, with the stores subscribers bound to the
 * channel), then `end`.
 */
export function runCallStart<O> (message: CallMessage, run: (ctx: CallContext, out: O) => void, ctx: CallContext, out: O): void {
  const outer = startingCall
  startingCall = message
  try {
    callChannel.start.runStores(message, run, undefined, ctx, out)
  } finally {
    startingCall = outer
  }
  callChannel.end.publish(message)
}

/** The pipeline answered the call with `res` (the caller may still throw it as an `HttpStatusError`). */
export function callResponded (message: CallMessage, res: HttpResponse): HttpResponse {
  message.status = res.status
  message.attempts = res.attempts
  return res
}

/** The call settled: `error` (when `failed`), then `asyncStart` and `asyncEnd`, as `TracingChannel.tracePromise`. */
export function endCall (message: CallMessage, failed: boolean, error: unknown): void {
  message.duration = (message === endingCall ? endedAt : performance.now()) - message.startedAt
  if (failed) {
    message.error = error
    const attempts = (error as { attempts?: unknown } | null)?.attempts
    if (message.attempts === undefined && typeof attempts === 'number') message.attempts = attempts
    callChannel.error.publish(message)
  }
  callChannel.asyncStart.publish(message)
  callChannel.asyncEnd.publish(message)
}

// Attempts: the transport publishes each request it sends, while `attemptObserved()`.

/** Whether any attempt channel has a subscriber: the transport's one check per request. */
export function attemptObserved (): boolean {
  return attemptStart.hasSubscribers || attemptHeaders.hasSubscribers || attemptEnd.hasSubscribers || attemptError.hasSubscribers
}

/**
 * A request of `ctx` is about to be sent with the dispatch options `request`: publishes `attempt:start`, during which
 * subscribers may add headers to `request`, and returns the message for the request's later events.
 */
export function startAttempt (ctx: CallContext, upstream: string | undefined, request: OutgoingRequest): AttemptMessage {
  const call = callMessageOf(ctx)
  const message = new AttemptMessage(call, ctx, upstream, request, call === startingCall ? call.startedAt : performance.now())
  attemptStart.publish(message)
  message.sent()
  return message
}

/** The request's response headers came (`attempt:headers`). */
export function attemptResponded (message: AttemptMessage, status: number): void {
  message.status = status
  message.timeToHeaders = performance.now() - message.startedAt
  attemptHeaders.publish(message)
}

/**
 * The request ended with `res` (`attempt:end`). A response handed over with its headers (not buffered) has them
 * published now, at the same time (one clock read: `performance.now()` is a good part of what publishing costs).
 */
export function attemptEnded (message: AttemptMessage, res: HttpResponse): void {
  const now = performance.now()
  endedAt = now
  const elapsed = now - message.startedAt
  if (message.timeToHeaders === undefined) {
    message.status = res.status
    message.timeToHeaders = elapsed
    attemptHeaders.publish(message)
  }
  message.duration = elapsed
  attemptEnd.publish(message)
}

/**
 * Reports the attempt's outcome (`value`, an error when `failed`) to `out`, right after `attemptEnded` or
 * `attemptFailed` of `message`: a call that ends inside the report takes the attempt's end as its own (`endingCall`).
 */
export function reportAttemptEnd (message: AttemptMessage, out: Outcome, ctx: CallContext, value: unknown, failed: boolean): void {
  const outer = endingCall
  endingCall = message.call
  try {
    if (failed) out.rejected(ctx, value)
    else out.resolved(ctx, value as HttpResponse)
  } finally {
    endingCall = outer
  }
}

/** The request failed with `error` (`attempt:error`). */
export function attemptFailed (message: AttemptMessage, error: unknown): void {
  const now = performance.now()
  endedAt = now
  message.duration = now - message.startedAt
  message.error = error
  attemptError.publish(message)
}

// Policies: each calls its function where the event happens; the function checks for subscribers first.

/**
 * The retry policy: the call is sent again in `delayMs` (after `attempt` of `maxAttempts` failed for `reason`). Call
 * it where the retry is decided, before sleeping, with the call's context as it was for the failed attempt.
 */
export function publishRetryScheduled (
  ctx: CallContext, attempt: number, maxAttempts: number, reason: string, delayMs: number, delaySource: RetryDelaySource
): void {
  if (!retryScheduled.hasSubscribers) return
  retryScheduled.publish(new RetryScheduledMessage(callMessageOf(ctx), ctx, upstreamOf(ctx), attempt, maxAttempts, reason, delayMs, delaySource))
}

/**
 * The retry policy: the failure (`reason`) may be retried but `refusal` says no; `delayMs` is the refused wait
 * (`retry-after`: the upstream's, `deadline`: the computed one), `retryAfterMs` the open breaker's wait (`breaker`).
 */
export function publishRetryRefused (
  ctx: CallContext, attempt: number, maxAttempts: number, reason: string, refusal: RetryRefusal,
  delayMs?: number, retryAfterMs?: number
): void {
  if (!retryRefused.hasSubscribers) return
  retryRefused.publish(new RetryRefusedMessage(callMessageOf(ctx), ctx, upstreamOf(ctx), attempt, maxAttempts, reason, refusal, delayMs, retryAfterMs))
}

/**
 * A breaker changed to `state`. `log` is the breaker's logger (the service's, or its child bound to `{ upstream }`);
 * `failures`, `calls`, `lastFailure`, `resetAfter` and `reopened` describe an opening, `probes` a half-opening. Not
 * for a `reset()`: that is no event.
 */
export function publishBreakerState (
  service: ServiceRuntime, log: Logger, upstream: string | undefined, state: BreakerState,
  failures?: number, calls?: number, lastFailure?: string, resetAfter?: number, reopened?: boolean, probes?: number,
  remote?: boolean
): void {
  if (!breakerState.hasSubscribers) return
  breakerState.publish(new BreakerStateMessage(service, log, upstream, state, failures, calls, lastFailure, resetAfter, reopened, probes, remote))
}

/** The bulkhead queued the call: `queued` waiters now, this one included. */
export function publishBulkheadQueued (ctx: CallContext, active: number, queued: number, maxConcurrent: number, maxQueue: number): void {
  if (!bulkheadQueued.hasSubscribers) return
  bulkheadQueued.publish(new BulkheadMessage(callMessageOf(ctx), active, queued, maxConcurrent, maxQueue, 0, undefined))
}

/** A queued call got its slot; it waited since `queuedAt` (`performance.now()` time). */
export function publishBulkheadAdmitted (
  ctx: CallContext, active: number, queued: number, maxConcurrent: number, maxQueue: number, queuedAt: number
): void {
  if (!bulkheadAdmitted.hasSubscribers) return
  bulkheadAdmitted.publish(new BulkheadMessage(callMessageOf(ctx), active, queued, maxConcurrent, maxQueue, performance.now() - queuedAt, undefined))
}

/**
 * The bulkhead refused the call: its queue was `full`, or the call waited `queueTimeout` (`timeout`) since `queuedAt`
 * (`performance.now()` time; `undefined` for a call that did not wait).
 */
export function publishBulkheadRejected (
  ctx: CallContext, active: number, queued: number, maxConcurrent: number, maxQueue: number, reason: 'full' | 'timeout',
  queuedAt: number | undefined
): void {
  if (!bulkheadRejected.hasSubscribers) return
  const waited = queuedAt === undefined ? 0 : performance.now() - queuedAt
  bulkheadRejected.publish(new BulkheadMessage(callMessageOf(ctx), active, queued, maxConcurrent, maxQueue, waited, reason))
}

/** The rate limiter makes the call wait `delayMs` for its permit (at most `maxWait`). */
export function publishRateLimitDelayed (ctx: CallContext, delayMs: number, maxWait: number): void {
  if (!rateLimitDelayed.hasSubscribers) return
  rateLimitDelayed.publish(new RateLimitMessage(callMessageOf(ctx), delayMs, maxWait))
}

/** The rate limiter refused the call: its permit is `delayMs` away, more than `maxWait`. */
export function publishRateLimitRejected (ctx: CallContext, delayMs: number, maxWait: number): void {
  if (!rateLimitRejected.hasSubscribers) return
  rateLimitRejected.publish(new RateLimitMessage(callMessageOf(ctx), delayMs, maxWait))
}

/** The hedging policy sent attempt `attempt`, its `hedges`-th hedge of the call, `delayMs` after the last one. */
export function publishHedgeFired (ctx: CallContext, attempt: number, hedges: number, delayMs: number): void {
  if (!hedgeFired.hasSubscribers) return
  hedgeFired.publish(new HedgeFiredMessage(callMessageOf(ctx), attempt, hedges, delayMs))
}

/** The fallback answers a call that failed with `error` (and, when a failure status called for it, `status`). */
export function publishFallbackServed (ctx: CallContext, error: unknown, status?: number): void {
  if (!fallbackServed.hasSubscribers) return
  fallbackServed.publish(new FallbackServedMessage(callMessageOf(ctx), error, status))
}

/** What the HTTP cache made of a call (`cache:served`); `error` / `upstreamStatus` for a stale entry served on failure. */
export function publishCacheServed (
  ctx: CallContext, cache: CacheMessage['cache'], age: number | undefined, error?: unknown, upstreamStatus?: number
): void {
  if (!cacheServed.hasSubscribers) return
  cacheServed.publish(new CacheMessage(callMessageOf(ctx), cache, age, error, upstreamStatus))
}

import { errors, type Dispatcher } from 'undici'
import { emptyBody } from '../body-done'
import type { AbortListener, CallSignal } from '../call-signal'
import { decodeResponse } from '../decompress'
import type { AttemptMessage, OutgoingRequest } from '../diagnostics/messages'
import { attemptEnded, attemptFailed, attemptObserved, reportAttemptEnd, startAttempt } from '../diagnostics/publish'
import { ClientClosedError } from '../errors'
import { HttpResponse, type ResponseMeta } from '../response'
import { toCallError } from '../transport-errors'
import { markFailure, markResponse } from './attempt-call'
import { abandonedRequestsOf } from './abandoned-requests'
import { BufferedAttempt, type AttemptSettings } from './buffered-attempt'
import { kNowhere } from './chain'
import type { CallContext, Layer, Outcome, ServiceRuntime } from './types'

type Timeouts = NonNullable<ResponseMeta['timeouts']>

/** The listener of errors nobody is left to hear. */
function settled (): void {}

/** One attempt in flight: what undici's callback needs to settle it. */
class Attempt {
  readonly ctx: CallContext
  // `kNowhere` once used (see `settle`): undici holds `opaque` while the body is in flight.
  out: Outcome
  /** Armed by the first 1xx answer (rare, see `onInfo`): bounds the wait for the final answer's headers. */
  infoTimer: NodeJS.Timeout | null = null

  constructor (ctx: CallContext, out: Outcome) {
    this.ctx = ctx
    this.out = out
  }
}

/** Fails an attempt with `err` as a typed error of its call (`meta`'s phase timeouts), marked as the attempt's. */
function rejectAttempt (out: Outcome, ctx: CallContext, meta: ResponseMeta, err: unknown): void {
  out.rejected(ctx, markFailure(toCallError(err, meta, meta.timeouts), ctx))
}

/** An attempt's outcome while something subscribes to the attempt channels: published, then reported. */
class PublishedOutcome implements Outcome {
  constructor (private readonly message: AttemptMessage, private readonly out: Outcome) {}

  resolved (ctx: CallContext, res: HttpResponse): void {
    attemptEnded(this.message, res)
    reportAttemptEnd(this.message, this.out, ctx, res, false)
  }

  rejected (ctx: CallContext, err: unknown): void {
    attemptFailed(this.message, err)
    reportAttemptEnd(this.message, this.out, ctx, err, true)
  }
}

/**
 * undici's `onInfo` for `request()`, called for each 1xx answer. undici restarts its headers timer on every one, so
 * a stream of them (`103 Early Hints` every few hundred ms) would hold the attempt for ever: the first one arms a
 * timer of ours for the final answer's headers, cleared when undici calls back. One function for every attempt (no
 * closure): undici calls it as a method of its request handler, which holds our `opaque` and the request's `abort`.
 */
function onInfo (this: { opaque?: unknown, abort?: ((err: Error) => void) | null }): void {
  const attempt = this.opaque
  const abort = this.abort
  if (!(attempt instanceof Attempt) || attempt.infoTimer !== null || typeof abort !== 'function') return
  attempt.infoTimer = setTimeout(infoTimedOut, attempt.ctx.headersTimeout, abort)
}

/** The final headers did not come within `headersTimeout` of the first 1xx: fail as undici fails late headers. */
function infoTimedOut (abort: (err: Error) => void): void {
  abort(new errors.HeadersTimeoutError())
}

function clearInfoTimer (attempt: Attempt): void {
  clearTimeout(attempt.infoTimer as NodeJS.Timeout)
  attempt.infoTimer = null
}

/**
 * One attempt of a call that can abort (it has a signal). undici's `request()` aborts a request only once it has a
 * connection: one still waiting for it (undici's queue, a connect or TLS handshake) would settle only when undici
 * gets to it, long after a timeout or deadline said the call was over. This attempt listens to the signal too and
 * settles at once; undici then aborts the request unsent when it gets to it, or fails it with its connection, and
 * calls back into the void (`settleSignalled`). Until then it counts as abandoned (see `./abandoned-requests`).
 */
class SignalledAttempt extends Attempt implements AbortListener {
  readonly settings: AttemptSettings
  readonly signal: CallSignal
  /** Settled by the signal before undici answered: undici still holds the request. */
  abandoned = false

  constructor (settings: AttemptSettings, ctx: CallContext, signal: CallSignal, out: Outcome) {
    super(ctx, out)
    this.settings = settings
    this.signal = signal
  }

  onSignalAbort (): void {
    this.abandoned = true
    this.settings.abandoned.add()
    const meta = this.settings.metaOf(this.ctx)
    const out = this.out
    this.out = kNowhere
    rejectAttempt(out, this.ctx, meta, this.signal.reason)
  }
}

/**
 * The innermost layer: one `dispatcher.request` per attempt. Phase timeouts are undici's own `headersTimeout` and
 * `bodyTimeout` (its timers are cheap and coarse); the connect timeout is the pool's. Failures become typed errors.
 *
 * A call of the *Json helpers (`ctx.bufferBody`) has its 2xx body read here, inside the attempt: a body that breaks
 * off fails the attempt (and may be retried), and attempt timeouts and the breaker see it. Such a call is dispatched
 * with a handler of its own that reads the body without a stream (`./buffered-attempt`); other calls use undici's
 * `request()`, whose body stream is what they hand over.
 *
 * This runs for every attempt of every call, so it is written for the hot path: a layer of the chain in callback form
 * (`./chain`: it reports to `out`, with no promise of its own; `BufferedAttempt` is the AsyncResource that puts the
 * report back in the call's async context), undici's callback API (no promise of undici's own), and the response's
 * description (`meta`) made once the answer is in, not held while waiting.
 */
export function transport (service: ServiceRuntime): Layer {
  const { origins, maxResponseSize, timeout, decompress } = service.options
  const origin = origins[0]
  const timeouts: Timeouts = { connect: timeout.connect, headers: timeout.headers, body: timeout.body }
  const name = service.name
  const counters = service.counters
  // The upstream of every request when the service has one origin (repeated or not); with several, the breakers'
  // pick (`ctx.upstream`), or none: a balanced pool does not say which it picked.
  const soleOrigin = origins.every((o) => o === origin) ? origin : undefined

  /** What a response or error of this attempt reports: the call's own phase timeouts, when it set them. */
  function metaOf (ctx: CallContext): ResponseMeta {
    const limits = ctx.headersTimeout === timeouts.headers && ctx.bodyTimeout === timeouts.body
      ? timeouts
      : { connect: timeouts.connect, headers: ctx.headersTimeout, body: ctx.bodyTimeout }
    return { service: name, method: ctx.method, path: ctx.path, origin: ctx.upstream?.origin ?? origin, maxResponseSize, timeouts: limits }
  }

  const settings: AttemptSettings = { metaOf, decompress, abandoned: abandonedRequestsOf(service) }

  return (ctx: CallContext, out: Outcome): void => {
    const dispatcher = service.dispatcher
    if (dispatcher === undefined) {
      out.rejected(ctx, markFailure(toCallError(new ClientClosedError(`${name}: service is not open: await app.ready() first (or await services.open() without Fastify), and call before close()`), metaOf(ctx)), ctx))
      return
    }
    counters.attempts++
    const options: Dispatcher.RequestOptions<Attempt> = {
      // The upstream the breaker picked (several baseUrls and a breaker), else the first: the pool picks.
      origin: ctx.upstream?.origin ?? origin,
      path: ctx.path,
      method: ctx.method as Dispatcher.HttpMethod,
      headers: ctx.headers,
      // undici also sends (async) iterables, which its types leave out: the replayable multipart body is one.
      body: ctx.body as Dispatcher.DispatchOptions['body'],
      headersTimeout: ctx.headersTimeout,
      bodyTimeout: ctx.bodyTimeout
    }
    const signal = ctx.signal
    // undici would hold an aborted request until it has a connection for it (see `SignalledAttempt`).
    if (signal?.aborted === true) {
      rejectAttempt(out, ctx, metaOf(ctx), signal.reason)
      return
    }
    if (!attemptObserved()) {
      send(ctx, dispatcher, options, signal, undefined, out)
      return
    }
    // Something subscribes to the attempt channels: this request is published, and may get headers from them.
    const message = startAttempt(ctx, ctx.upstream?.origin ?? soleOrigin, options as OutgoingRequest)
    send(ctx, dispatcher, options, signal, message, new PublishedOutcome(message, out))
  }

  /** Hands one request to undici; `message` is its diagnostics message when something subscribes. */
  function send (
    ctx: CallContext, dispatcher: Dispatcher, options: Dispatcher.RequestOptions<Attempt>, signal: CallSignal | undefined,
    message: AttemptMessage | undefined, out: Outcome
  ): void {
    if (ctx.bufferBody) {
      const attempt = new BufferedAttempt(settings, ctx, out)
      attempt.diagnostics = message
      try {
        dispatcher.dispatch(options, attempt)
      } catch (err) {
        // undici's dispatchers report through the handler; an injected one or an interceptor may throw instead.
        attempt.onResponseError(undefined, err as Error)
      }
      return
    }
    options.onInfo = onInfo
    // undici hands `opaque` back to the callback: one small object per attempt, no closure over it.
    let attempt: Attempt
    if (signal === undefined) {
      attempt = new Attempt(ctx, out)
      options.opaque = attempt
    } else {
      options.signal = signal
      const signalled = new SignalledAttempt(settings, ctx, signal, out)
      signal.on('abort', signalled)
      options.opaque = attempt = signalled
    }
    try {
      dispatcher.request(options, signal === undefined ? settle : settleSignalled)
    } catch (err) {
      // As above: an injected dispatcher may throw rather than call back.
      if (attempt instanceof SignalledAttempt) {
        if (attempt.abandoned) return
        signal?.removeListener('abort', attempt)
      }
      const to = attempt.out
      attempt.out = kNowhere
      rejectAttempt(to, ctx, metaOf(ctx), err)
    }
  }

  /** undici's answer to an attempt with a signal: settles it, unless its signal settled it already. */
  function settleSignalled (err: Error | null, data: Dispatcher.ResponseData | { opaque: unknown }): void {
    const attempt = data.opaque as SignalledAttempt
    if (attempt.infoTimer !== null) clearInfoTimer(attempt)
    if (!attempt.abandoned) {
      attempt.signal.removeListener('abort', attempt)
      settle(err, data)
      return
    }
    // undici let go of the request: aborted (unsent, as its signal had aborted) or failed with its connection.
    attempt.settings.abandoned.drop()
    // undici answers an aborted request with its error; a body, should one come anyway, reaches no one.
    // undici's body emits an abort error when destroyed before its end: nobody reads it, so nothing may hear it.
    if (err === null) (data as Dispatcher.ResponseData).body.on('error', settled).destroy()
  }

  /** undici's answer to one attempt (made once per service). */
  function settle (err: Error | null, data: Dispatcher.ResponseData | { opaque: unknown }): void {
    const attempt = data.opaque as Attempt
    if (attempt.infoTimer !== null) clearInfoTimer(attempt)
    const { ctx, out } = attempt
    // undici keeps `opaque` until the body ends: through the outcome it would keep the call, hence the response,
    // alive, and an unread response could never be collected (./unread-body).
    attempt.out = kNowhere
    const meta = metaOf(ctx)
    if (err !== null) {
      rejectAttempt(out, ctx, meta, err)
      return
    }
    const { statusCode, headers } = data as Dispatcher.ResponseData
    let body = (data as Dispatcher.ResponseData).body
    if (statusCode === 204 || statusCode === 304) body = emptyBody(body) as typeof body
    const res = markResponse(headers['content-encoding'] !== undefined && (ctx.options.decompress ?? decompress)
      ? decodeResponse(statusCode, headers, body, meta)
      : new HttpResponse(statusCode, headers, body, meta), ctx)
    // undici calls back from its parser as the headers come, before it pushes the body bytes that came in the same
    // read: the response goes up once that read is done (a microtask later), so a small body is in its stream by
    // then (`../unread-body` leaves such a body alone). The callback runs in the call's async context (undici's
    // request() binds it), and so does this microtask.
    queueMicrotask(() => { out.resolved(ctx, res) })
  }
}

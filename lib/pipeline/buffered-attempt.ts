import { AsyncResource } from 'node:async_hooks'
import type { IncomingHttpHeaders } from 'node:http'
import { errors, type Dispatcher } from 'undici'
import { BodyChunks } from '../body-decoder'
import type { AbortListener, CallSignal } from '../call-signal'
import { discardRequestBody } from '../call'
import { decodeResponse } from '../decompress'
import type { AttemptMessage } from '../diagnostics/messages'
import { attemptResponded } from '../diagnostics/publish'
import { HttpResponse, type ResponseMeta } from '../response'
import { toCallError } from '../transport-errors'
import type { AbandonedRequests } from './abandoned-requests'
import { markFailure, markResponse } from './attempt-call'
import { BodyBridge, type BodySource } from './body-bridge'
import { kNowhere } from './chain'
import type { CallContext, Outcome } from './types'

type Controller = Dispatcher.DispatchController

/** What every attempt of one service shares (made once per service by the transport). */
export interface AttemptSettings {
  /** What a response or error of the attempt reports. */
  metaOf: (ctx: CallContext) => ResponseMeta
  /** The service's `decompress` option (a call may override it). */
  decompress: boolean
  /** Requests undici still holds for attempts already settled (their signal aborted while they waited). */
  abandoned: AbandonedRequests
}

const kNoBody = Buffer.alloc(0)

/** Reports a settled attempt, in its call's context (one function for every attempt: no closure per call). */
function report (attempt: BufferedAttempt): void {
  attempt.runInAsyncScope(attempt.reportOutcome, attempt)
}

function infoTimedOut (attempt: BufferedAttempt): void {
  attempt.onInfoTimeout()
}

/**
 * One attempt of a *Json call, as an undici dispatch handler. undici's `request()` gives every response a body
 * stream and an async resource, and links the call's signal with two closures; a small JSON body read through all
 * that costs about a sixth of a Fastify route's CPU on these machines. This handler gathers a 2xx body's chunks
 * itself (bounded by `maxResponseSize`) and settles the attempt with the response holding its bytes, so a body that
 * breaks off fails the attempt, as the *Json helpers promise.
 *
 * Any other answer (an error status, a compressed body) gets a stream of its own (`BodyBridge`) and follows the same
 * path as responses of `request()`: error details are read from it, compressed bodies decoded and then buffered.
 *
 * The call's signal is listened to by this object (no closure); it aborts the attempt at once, wherever it waits. A
 * request still waiting for a connection is left to undici, which aborts it unsent when it gets to it.
 */
export class BufferedAttempt extends AsyncResource implements Dispatcher.DispatchHandler, AbortListener, BodySource {
  private readonly ctx: CallContext
  private readonly settings: AttemptSettings
  /** Where the attempt's outcome goes; `kNowhere` once reported. */
  private out: Outcome
  /** The outcome was handed on (or is about to be, for `reportLater`): later ones are the same attempt's. */
  private reported = false
  /** The outcome, between settling and its report. */
  private outcome: HttpResponse | unknown = undefined
  private failedWith = false
  private readonly signal: CallSignal | undefined
  private controller: Controller | null = null
  /** Why the attempt was aborted before undici started it: it is aborted as soon as it starts. */
  private abortReason: Error | null = null
  /** The attempt settled while undici still holds its request (counted in `settings.abandoned` until undici lets go). */
  private leftInUndici = false
  private res: HttpResponse | null = null
  /** The 2xx body being gathered; `null` when the body goes to a bridge, or once the attempt settled. */
  private chunks: BodyChunks | null = null
  private bridge: BodyBridge | null = null
  /** The promise is settled. */
  private settled = false
  /** undici is done with the response (ended or failed). */
  private finished = false
  /** Armed by the first 1xx answer (rare): bounds the wait for the final answer's headers. */
  private infoTimer: NodeJS.Timeout | null = null
  /** The request's diagnostics message, set by the transport while something subscribes: its headers are published here. */
  diagnostics: AttemptMessage | undefined = undefined

  constructor (settings: AttemptSettings, ctx: CallContext, out: Outcome) {
    // undici calls a dispatch handler back in the async context of the connection (the call that opened it), not the
    // call's. The attempt is an AsyncResource, made here in the call's context, and reports its outcome in its scope,
    // so whatever runs on it (a retry, its log line, the next attempt's span) sees the caller's AsyncLocalStorage
    // stores, as undici's own `request()` does with an AsyncResource of its own. Measured against a promise made here
    // and resolved to report (what this did before): about 90 ns less per attempt with no AsyncLocalStorage in use
    // and 190 ns less with one, and the report no longer waits for a microtask.
    super('fastify-http-services:attempt')
    this.settings = settings
    this.ctx = ctx
    this.out = out
    const signal = ctx.signal
    this.signal = signal
    if (signal !== undefined) signal.on('abort', this)
  }

  onRequestStart (controller: Controller): void {
    if (this.abortReason !== null) {
      controller.abort(this.abortReason)
      this.letGo()
      return
    }
    this.controller = controller
  }

  onResponseStart (controller: Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) {
      // 1xx: the answer is still to come. undici restarts its headers timer on each one, so a stream of them would
      // hold the attempt for ever: the first one arms a timer of ours for the final answer's headers.
      if (this.infoTimer === null && !this.settled) this.infoTimer = setTimeout(infoTimedOut, this.ctx.headersTimeout, this)
      return
    }
    if (this.infoTimer !== null) this.clearInfoTimer()
    if (this.diagnostics !== undefined && !this.settled) attemptResponded(this.diagnostics, statusCode)
    const ctx = this.ctx
    const meta = this.settings.metaOf(ctx)
    if (statusCode === 204 || statusCode === 304 || ctx.method === 'HEAD') {
      // No body can follow: the answer is whole now. undici may still fail it (it checks a 204's or 304's
      // content-length, which RFC 9110 allows on a 304, against the bytes that never come): nobody hears that.
      const res = markResponse(HttpResponse.unread(statusCode, headers, meta), ctx)
      res.setBody(kNoBody)
      this.settled = true
      this.signal?.removeListener('abort', this)
      this.resolve(res)
      return
    }
    const encoded = headers['content-encoding'] !== undefined && (ctx.options.decompress ?? this.settings.decompress)
    const readable = statusCode < 300
    if (readable && !encoded) {
      const res = markResponse(HttpResponse.unread(statusCode, headers, meta), ctx)
      this.res = res
      const length = headers['content-length']
      if (length !== undefined && Number(length) > meta.maxResponseSize) {
        this.abortWith(res.tooLarge(Number(length)), controller)
        return
      }
      this.chunks = new BodyChunks(meta.maxResponseSize)
      return
    }
    const bridge = new BodyBridge(this)
    this.bridge = bridge
    this.settled = true
    if (!encoded) {
      this.reportLater(markResponse(new HttpResponse(statusCode, headers, bridge, meta), ctx))
      return
    }
    const res = markResponse(decodeResponse(statusCode, headers, bridge, meta), ctx)
    if (readable) res.buffer((buffered) => { this.resolve(buffered) }, (err) => { this.reject(markFailure(err as object, ctx)) })
    else this.reportLater(res)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    const bridge = this.bridge
    if (bridge !== null) {
      if (!bridge.push(chunk)) controller.pause()
      return
    }
    const chunks = this.chunks
    if (chunks !== null && !chunks.add(chunk)) this.abortWith((this.res as HttpResponse).tooLarge(undefined), controller)
  }

  onResponseEnd (): void {
    this.finished = true
    const bridge = this.bridge
    if (bridge !== null) {
      bridge.push(null)
      return
    }
    const chunks = this.chunks
    if (chunks === null || this.settled) return
    this.chunks = null
    this.signal?.removeListener('abort', this)
    // The bytes as they came (one chunk is not copied); the caller's read decodes them (`../body-decoder`).
    const res = this.res as HttpResponse
    res.setBody(chunks.bytes())
    this.settled = true
    this.resolve(res)
  }

  onResponseError (_controller: Controller | undefined, err: Error): void {
    this.finished = true
    if (this.infoTimer !== null) this.clearInfoTimer()
    const bridge = this.bridge
    if (bridge !== null) {
      if (!bridge.destroyed) bridge.destroy(err)
      return
    }
    // As undici's request(): a stream body of a failed attempt is not sent again.
    discardRequestBody(this.ctx.body)
    this.fail(err)
  }

  /**
   * The call's signal aborted: the attempt fails with its reason at once, wherever it waits. A request still waiting
   * for a connection is aborted (unsent) when undici gets to it.
   */
  onSignalAbort (): void {
    const reason = (this.signal as CallSignal).reason as Error
    if (this.bridge !== null) {
      if (!this.bridge.destroyed) this.bridge.destroy(reason)
      return
    }
    if (this.controller !== null) {
      this.abortWith(reason, this.controller)
    } else {
      // Not started yet (undici's queue, a connect or TLS handshake): undici offers no way to take the request out
      // until it has a connection for it, which may be seconds away. The attempt settles now, as its timeout,
      // deadline or caller said; the request is aborted unsent when undici gets to it (`onRequestStart`), or fails
      // with its connection. Until then it counts as abandoned: the bulkhead keeps a slot for it, so calls that give
      // up while queued cannot pile up in undici's unbounded queue (see ./abandoned-requests).
      // Counted first: the failure is reported at once, and a bulkhead above counts abandoned requests as it lets go.
      this.abortReason = reason
      this.leftInUndici = true
      this.settings.abandoned.add()
      this.fail(reason)
    }
  }

  /** undici let go of a request whose attempt had settled already. */
  private letGo (): void {
    if (this.leftInUndici) {
      this.leftInUndici = false
      this.settings.abandoned.drop()
    }
  }

  /**
   * The final answer's headers did not come within `headersTimeout` of the first 1xx: the attempt fails as undici
   * fails one whose headers are late (a `TimeoutError` of phase `headers`).
   */
  onInfoTimeout (): void {
    this.infoTimer = null
    const controller = this.controller
    if (controller !== null && !this.settled) this.abortWith(new errors.HeadersTimeoutError(), controller)
  }

  private clearInfoTimer (): void {
    clearTimeout(this.infoTimer as NodeJS.Timeout)
    this.infoTimer = null
  }

  resumeBody (): void {
    this.controller?.resume()
  }

  bodyClosed (reason: Error | null): void {
    this.signal?.removeListener('abort', this)
    if (!this.finished && this.controller !== null) {
      this.finished = true
      this.controller.abort(reason ?? new errors.RequestAbortedError())
    }
  }

  private abortWith (err: Error, controller: Controller): void {
    this.fail(err)
    if (!this.finished) {
      this.finished = true
      controller.abort(err)
    }
  }

  /** Rejects the attempt with `err` as a typed error of the call (once; later failures are the same attempt's). */
  private fail (err: unknown): void {
    this.chunks = null
    this.signal?.removeListener('abort', this)
    if (this.settled) {
      // undici failing a request it still held for a settled attempt (its connection failed, or it was closed).
      this.letGo()
      return
    }
    this.settled = true
    const meta = this.res?.meta ?? this.settings.metaOf(this.ctx)
    this.reject(markFailure(toCallError(err, meta, meta.timeouts), this.ctx))
  }

  /** Reports the attempt's response (once: the outcome is dropped, undici may hold this handler a while longer). */
  private resolve (res: HttpResponse): void {
    this.settleWith(res, false)
  }

  private reject (err: unknown): void {
    this.settleWith(err, true)
  }

  private settleWith (outcome: unknown, failed: boolean): void {
    if (this.reported) return
    this.reported = true
    this.outcome = outcome
    this.failedWith = failed
    report(this)
  }

  /**
   * Reports a response whose body follows in a stream (an error status, a compressed body) once undici's parser is
   * done with the read that brought its headers (a microtask later), so a small body is in the stream by then, as
   * the transport does for `request()`. Rare: a closure is fine.
   */
  private reportLater (res: HttpResponse): void {
    if (this.reported) return
    this.reported = true
    this.outcome = res
    this.failedWith = false
    queueMicrotask(() => { report(this) })
  }

  /** @internal Reports the outcome to the chain (in the call's context: see `report`). */
  reportOutcome (): void {
    const out = this.out
    const outcome = this.outcome
    // undici may hold this handler a while longer (a body it still drains): it keeps neither the call nor the answer.
    this.out = kNowhere
    this.outcome = undefined
    if (this.failedWith) out.rejected(this.ctx, outcome)
    else out.resolved(this.ctx, outcome as HttpResponse)
  }
}

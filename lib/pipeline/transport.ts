import type { Dispatcher } from 'undici'
import { decodeResponse } from '../decompress'
import { ClientClosedError } from '../errors'
import { HttpResponse, type ResponseMeta } from '../response'
import { toCallError } from '../transport-errors'
import { markFailure, markResponse } from './attempt-call'
import { BufferedAttempt, type AttemptSettings } from './buffered-attempt'
import type { CallContext, Next, ServiceRuntime } from './types'

type Timeouts = NonNullable<ResponseMeta['timeouts']>

/** One attempt in flight: what undici's callback needs to settle it. */
class Attempt {
  readonly ctx: CallContext
  readonly resolve: (res: HttpResponse) => void
  readonly reject: (err: unknown) => void

  constructor (ctx: CallContext, resolve: (res: HttpResponse) => void, reject: (err: unknown) => void) {
    this.ctx = ctx
    this.resolve = resolve
    this.reject = reject
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
 * This runs for every attempt of every call, so it is written for the hot path: undici's callback API (no promise of
 * undici's own), and the response's description (`meta`) made once the answer is in, not held while waiting.
 */
export function transport (service: ServiceRuntime): Next {
  const { origins, maxResponseSize, timeout, decompress } = service.options
  const origin = origins[0]
  const timeouts: Timeouts = { connect: timeout.connect, headers: timeout.headers, body: timeout.body }
  const name = service.name
  const counters = service.counters

  /** What a response or error of this attempt reports: the call's own phase timeouts, when it set them. */
  function metaOf (ctx: CallContext): ResponseMeta {
    const limits = ctx.headersTimeout === timeouts.headers && ctx.bodyTimeout === timeouts.body
      ? timeouts
      : { connect: timeouts.connect, headers: ctx.headersTimeout, body: ctx.bodyTimeout }
    return { service: name, method: ctx.method, path: ctx.path, origin: ctx.upstream?.origin ?? origin, maxResponseSize, timeouts: limits }
  }

  const settings: AttemptSettings = { metaOf, decompress }

  return (ctx: CallContext): Promise<HttpResponse> => {
    const dispatcher = service.dispatcher
    if (dispatcher === undefined) {
      return Promise.reject(markFailure(toCallError(new ClientClosedError(`${name}: service is not open (call it after ready() / onReady, before close())`), metaOf(ctx)), ctx))
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
    if (ctx.bufferBody) {
      const signal = ctx.signal
      if (signal?.aborted === true) {
        const meta = metaOf(ctx)
        return Promise.reject(markFailure(toCallError(signal.reason, meta, meta.timeouts), ctx))
      }
      return new Promise<HttpResponse>((resolve, reject) => {
        const attempt = new BufferedAttempt(settings, ctx, resolve, reject)
        try {
          dispatcher.dispatch(options, attempt)
        } catch (err) {
          // undici's dispatchers report through the handler; an injected one or an interceptor may throw instead.
          attempt.onResponseError(undefined, err as Error)
        }
      })
    }
    options.signal = ctx.signal
    return new Promise<HttpResponse>((resolve, reject) => {
      // undici hands `opaque` back to the callback: one small object per attempt, no closure over it.
      options.opaque = new Attempt(ctx, resolve, reject)
      dispatcher.request(options, settle)
    })
  }

  /** undici's answer to one attempt (made once per service). */
  function settle (err: Error | null, data: Dispatcher.ResponseData | { opaque: unknown }): void {
    const { ctx, resolve, reject } = data.opaque as Attempt
    const meta = metaOf(ctx)
    if (err !== null) {
      reject(markFailure(toCallError(err, meta, meta.timeouts), ctx))
      return
    }
    const { statusCode, headers, body } = data as Dispatcher.ResponseData
    resolve(markResponse(headers['content-encoding'] !== undefined && (ctx.options.decompress ?? decompress)
      ? decodeResponse(statusCode, headers, body, meta)
      : new HttpResponse(statusCode, headers, body, meta), ctx))
  }
}

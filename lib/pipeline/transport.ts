import type { Dispatcher } from 'undici'
import { decodeResponse } from '../decompress'
import { ClientClosedError } from '../errors'
import { HttpResponse, type ResponseMeta } from '../response'
import { toCallError } from '../transport-errors'
import type { CallContext, Next, ServiceRuntime } from './types'

/**
 * The innermost layer: one `dispatcher.request` per attempt. Phase timeouts are undici's own `headersTimeout` and
 * `bodyTimeout` (its timers are cheap and coarse); the connect timeout is the pool's. Failures become typed errors.
 */
export function transport (service: ServiceRuntime): Next {
  const { origins, maxResponseSize, timeout, decompress } = service.options
  const origin = origins[0]
  const timeouts = { connect: timeout.connect, headers: timeout.headers, body: timeout.body }
  const name = service.name
  return async (ctx: CallContext): Promise<HttpResponse> => {
    const dispatcher = service.dispatcher
    // Errors report the limit that applied: a call's own phase timeouts, when it set them.
    const limits = ctx.headersTimeout === timeouts.headers && ctx.bodyTimeout === timeouts.body
      ? timeouts
      : { connect: timeouts.connect, headers: ctx.headersTimeout, body: ctx.bodyTimeout }
    const meta: ResponseMeta = { service: name, method: ctx.method, path: ctx.path, origin, maxResponseSize, timeouts: limits }
    if (dispatcher === undefined) {
      throw toCallError(new ClientClosedError(`${name}: service is not open (call it after ready() / onReady, before close())`), meta)
    }
    service.counters.attempts++
    let data: Dispatcher.ResponseData
    try {
      data = await dispatcher.request({
        origin,
        path: ctx.path,
        method: ctx.method as Dispatcher.HttpMethod,
        headers: ctx.headers,
        // undici also sends (async) iterables, which its types leave out: the replayable multipart body is one.
        body: ctx.body as Dispatcher.DispatchOptions['body'],
        signal: ctx.signal,
        headersTimeout: ctx.headersTimeout,
        bodyTimeout: ctx.bodyTimeout
      })
    } catch (err) {
      throw toCallError(err, meta, limits)
    }
    if (data.headers['content-encoding'] !== undefined && (ctx.options.decompress ?? decompress)) {
      return decodeResponse(data.statusCode, data.headers, data.body, meta)
    }
    return new HttpResponse(data.statusCode, data.headers, data.body, meta)
  }
}

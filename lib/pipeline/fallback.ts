import { publishFallbackServed } from '../diagnostics/publish'
import type { Fallback } from '../config/types'
import { statusError } from '../error-detail'
import {
  BulkheadRejectedError,
  CircuitOpenError,
  HttpStatusError,
  RateLimitedError,
  TransportError,
  type HttpServicesError
} from '../errors'
import { HttpResponse } from '../response'
import { syntheticResponse } from '../synthetic-response'
import { isFailureStatus } from './failure-status'
import type { CallContext, PolicyFactory, PolicySteps, ServiceRuntime } from './types'

interface FallbackState {
  policy: PolicySteps
  /** Fallbacks that produced the call's response. */
  served: number
  /** Fallbacks that threw (rethrowing the call's error or another): the call failed all the same. */
  failed: number
}

/**
 * Failures a fallback may stand in for: the downstream's (transport, timeouts, status) and the resilience limits'
 * (open breaker, full bulkhead, rate limit). Not the caller's abort (nobody waits for that call any more) and not
 * bad input or options, which are bugs a fallback would hide.
 */
function servesFallback (err: unknown): err is HttpServicesError {
  return err instanceof TransportError || err instanceof HttpStatusError || err instanceof CircuitOpenError ||
    err instanceof BulkheadRejectedError || err instanceof RateLimitedError
}

/** Runs the fallback; its value becomes the call's response (a value that is not a response: 200 with it as JSON). */
async function recover (fallback: Fallback, err: HttpServicesError, ctx: CallContext): Promise<HttpResponse> {
  const service = ctx.service.name
  const value = await fallback(err, { service, method: ctx.method, path: ctx.path })
  if (value instanceof HttpResponse) return value
  const res = syntheticResponse({
    json: value,
    service,
    method: ctx.method,
    path: ctx.path,
    maxResponseSize: ctx.service.options.maxResponseSize
  })
  if (err.attempts !== undefined) res.attempts = err.attempts
  return res
}

/**
 * Fallback, the outermost policy: it sees the call's final outcome, after retries, an open breaker, a full
 * bulkhead or the rate limit. `fallback(error, { service, method, path })` runs on a failure of the downstream
 * or of a resilience limit (see `servesFallback`), and on a final failure status (5xx, 408, 429) when the call would
 * throw `HttpStatusError` (`throwHttpErrors`); other 4xx reach the caller. The status error comes from the builder
 * the service throws with (`statusError`), so the fallback gets the error the caller would have got. Whatever the
 * fallback throws is the call's error. A per-call `fallback` overrides the service's. Errors while reading the body
 * later (`json()`) are not covered.
 */
export const fallback: PolicyFactory = (service, perCall) => {
  const own = service.options.fallback
  if (own === undefined && !perCall) return undefined
  return service.shared('fallback', () => createFallback(service, own)).policy
}
fallback.callOptions = ['fallback']

function createFallback (service: ServiceRuntime, own: Fallback | undefined): FallbackState {
  const { throwHttpErrors, passthroughStatus } = service.options
  const serve = async (fn: Fallback, err: HttpServicesError, ctx: CallContext): Promise<HttpResponse> => {
    let res: HttpResponse
    try {
      res = await recover(fn, err, ctx)
    } catch (thrown) {
      created.failed++
      throw thrown
    }
    created.served++
    return res
  }
  const created: FallbackState = {
    served: 0,
    failed: 0,
    // Steps (`./chain`): a call answered well goes back up with no promise of this policy's.
    policy: {
      enter: () => undefined,
      response (res: HttpResponse, ctx: CallContext): HttpResponse | Promise<HttpResponse> {
        const fn = ctx.options.fallback ?? own
        if (fn === undefined || !isFailureStatus(res.status) || !(ctx.options.throwHttpErrors ?? throwHttpErrors)) return res
        return statusError(res, passthroughStatus).then((err) => {
          publishFallbackServed(ctx, err, res.status)
          return serve(fn, err, ctx)
        })
      },
      failure (err: unknown, ctx: CallContext): Promise<HttpResponse> {
        const fn = ctx.options.fallback ?? own
        if (fn === undefined || !servesFallback(err)) throw err
        publishFallbackServed(ctx, err)
        return serve(fn, err, ctx)
      }
    }
  }
  service.addStats('fallback', () => ({ served: created.served, failed: created.failed }))
  service.onReset?.(() => {
    created.served = 0
    created.failed = 0
  })
  return created
}

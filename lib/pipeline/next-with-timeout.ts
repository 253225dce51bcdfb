import { whenBodyDone } from '../body-done'
import { CallSignal } from '../call-signal'
import type { HttpResponse } from '../response'
import type { CallContext, Next } from './types'

/**
 * Calls `next` with a timeout: `next` gets a signal of its own, following the call's, that aborts with `expired()`
 * after `limit` ms. The timer and the link to the call's signal last until the response's body is done (read,
 * destroyed, or holding no data) or `next` failed. With `restore`, the context gets its previous signal back once
 * `next` settles (the signal was one attempt's only). Shared by the attempt timeout and per-call deadlines.
 */
export async function nextWithTimeout (
  ctx: CallContext, next: Next, limit: number, expired: () => unknown, restore: boolean
): Promise<HttpResponse> {
  const parent = ctx.signal
  const signal = new CallSignal()
  if (parent !== undefined) signal.follow(parent)
  const timer = setTimeout(() => signal.abort(expired()), limit)
  const done = (): void => {
    clearTimeout(timer)
    signal.unlink()
  }
  ctx.signal = signal
  let res: HttpResponse
  try {
    res = await next(ctx)
  } catch (err) {
    done()
    throw err
  } finally {
    if (restore) ctx.signal = parent
  }
  // The timer keeps guarding the body until it is read or destroyed.
  whenBodyDone(res, done)
  return res
}

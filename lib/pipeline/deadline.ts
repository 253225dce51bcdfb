import { performance } from 'node:perf_hooks'
import { CallSignal } from '../call-signal'
import { TimeoutError, describe, stamp } from '../errors'
import type { HttpResponse } from '../response'
import type { CallContext, Next, Policy, PolicyFactory } from './types'

/** The call's own total timeout: per-call `timeout` (a number is total) over the service's. */
function totalOf (ctx: CallContext, serviceTotal: number): number {
  const t = ctx.options.timeout
  if (typeof t === 'number') return t
  if (t !== undefined && t.total !== undefined) return t.total
  return serviceTotal
}

function timeoutError (ctx: CallContext, limit: number, inbound: boolean): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  const why = inbound ? 'the inbound request\'s deadline passed' : `total timeout after ${limit} ms`
  return stamp(new TimeoutError(`${describe(target)}: ${why}`), target, { phase: 'total', timeout: limit })
}

/**
 * Total timeout and deadline: the whole call (every attempt, every backoff sleep and the body read) must end by
 * `ctx.deadline`, the earlier of now + `timeout.total` and the inbound request's deadline. One timer per call
 * aborts the call's signal, which undici turns into an aborted request or a destroyed body.
 */
export const deadline: PolicyFactory = (service, perCall) => {
  const serviceTotal = service.options.timeout.total
  if (!perCall && serviceTotal <= 0) return undefined
  const policy: Policy = async (ctx: CallContext, next: Next): Promise<HttpResponse> => {
    const total = totalOf(ctx, serviceTotal)
    const now = performance.now()
    const own = total > 0 ? now + total : Infinity
    const inbound = ctx.deadline < own
    const end = inbound ? ctx.deadline : own
    if (end === Infinity) return next(ctx)
    const limit = Math.round(end - now)
    if (limit <= 0) throw timeoutError(ctx, inbound ? 0 : total, inbound)
    ctx.deadline = end

    const signal = new CallSignal()
    if (ctx.signal !== undefined) signal.follow(ctx.signal)
    ctx.signal = signal
    const timer = setTimeout(() => signal.abort(timeoutError(ctx, inbound ? limit : total, inbound)), limit)
    const done = (): void => {
      clearTimeout(timer)
      signal.unlink()
    }
    let res: HttpResponse
    try {
      res = await next(ctx)
    } catch (err) {
      done()
      throw err
    }
    // The timer keeps guarding the body until it is read or destroyed.
    const body = res.body
    if (body.destroyed || body.readableEnded) done()
    else body.once('close', done)
    return res
  }
  return policy
}

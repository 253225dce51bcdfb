import { performance } from 'node:perf_hooks'
import { DeadlineQueue, DeadlineSignal } from './deadline-queue'
import { TimeoutError, describe, markCallerTimeout, stamp } from '../errors'
import type { HttpResponse } from '../response'
import { nextWithTimeout } from './next-with-timeout'
import type { CallContext, Next, PolicyFactory, PolicySteps } from './types'

/** The call's own total timeout: per-call `timeout` (a number is total) over the service's. */
function totalOf (ctx: CallContext, serviceTotal: number): number {
  const t = ctx.options.timeout
  if (typeof t === 'number') return t
  if (t !== undefined && t.total !== undefined) return t.total
  return serviceTotal
}

/** The timeout of a call's own limit (per-call `timeout`, or the inbound request's deadline): marked as the caller's. */
function timeoutError (ctx: CallContext, limit: number, inbound: boolean): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  const why = inbound ? 'the inbound request\'s deadline passed' : `total timeout after ${limit} ms`
  return markCallerTimeout(stamp(new TimeoutError(`${describe(target)}: ${why}`), target, { phase: 'total', timeout: limit }))
}

/**
 * Total timeout and deadline: the whole call (every attempt, every backoff sleep and the body read) must end by
 * `ctx.deadline`, the earlier of now + `timeout.total` and the inbound request's deadline. Expiry aborts the call's
 * signal, which undici turns into an aborted request or a destroyed body.
 *
 * The common case, the service's own total timeout, goes through the service's `DeadlineQueue` (no timer and no
 * listener per call); a call with its own `timeout` or an inbound deadline gets a timer of its own.
 */
export const deadline: PolicyFactory = (service, perCall) => {
  const serviceTotal = service.options.timeout.total
  if (!perCall && serviceTotal <= 0) return undefined
  const queue = new DeadlineQueue((signal: DeadlineSignal): Error => {
    const target = { service: service.name, method: signal.method, path: signal.path }
    return stamp(new TimeoutError(`${describe(target)}: total timeout after ${serviceTotal} ms`), target, { phase: 'total', timeout: serviceTotal })
  })
  service.onClose?.(() => queue.clear())
  /**
   * The signal this policy set on the call, once the call is back up here (only this policy makes a plain
   * `DeadlineSignal`: the attempt timeout's own, a subclass, is given back before the call comes up; and a call passes
   * one chain). It may have left the queue already (it expired): it is still unlinked.
   */
  const ownSignal = (ctx: CallContext): DeadlineSignal | undefined => {
    const signal = ctx.signal
    return signal instanceof DeadlineSignal ? signal : undefined
  }
  // Steps (`./chain`): a call under the service's own total timeout goes on with no promise of this policy's.
  const steps: PolicySteps = {
    enter (ctx: CallContext, next: Next): Promise<HttpResponse> | undefined {
      const total = totalOf(ctx, serviceTotal)
      const now = performance.now()
      const own = total > 0 ? now + total : Infinity
      const inbound = ctx.deadline < own
      if (inbound || total !== serviceTotal) return ownTimer(ctx, next, total, now, own, inbound)
      // The per-call chain also carries calls that have no deadline at all.
      if (own === Infinity) return next(ctx)
      const signal = new DeadlineSignal(own, ctx.method, ctx.path)
      if (ctx.signal !== undefined) signal.follow(ctx.signal)
      ctx.signal = signal
      ctx.deadline = own
      queue.add(signal)
      return undefined
    },
    response (res: HttpResponse, ctx: CallContext): HttpResponse {
      const signal = ownSignal(ctx)
      if (signal !== undefined) queue.release(signal, res)
      return res
    },
    failure (err: unknown, ctx: CallContext): never {
      const signal = ownSignal(ctx)
      if (signal !== undefined) queue.leave(signal)
      throw err
    }
  }
  return steps
}
deadline.callOptions = ['timeout']

/** A deadline of the call's own (per-call `timeout`, or the inbound request's): one timer, cleared when done. */
async function ownTimer (ctx: CallContext, next: Next, total: number, now: number, own: number, inbound: boolean): Promise<HttpResponse> {
  const end = inbound ? ctx.deadline : own
  if (end === Infinity) return await next(ctx)
  const limit = Math.round(end - now)
  if (limit <= 0) throw timeoutError(ctx, inbound ? 0 : total, inbound)
  ctx.deadline = end

  return await nextWithTimeout(ctx, next, limit, () => timeoutError(ctx, inbound ? limit : total, inbound), false)
}

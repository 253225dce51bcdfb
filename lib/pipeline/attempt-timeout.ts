import { performance } from 'node:perf_hooks'
import type { CallSignal } from '../call-signal'
import { TimeoutError, describe, stamp } from '../errors'
import type { HttpResponse } from '../response'
import { setDeadlineHeaders, type DeadlineHeaderNames } from './deadline-headers'
import { DeadlineQueue, DeadlineSignal } from './deadline-queue'
import { nextWithTimeout } from './next-with-timeout'
import type { CallContext, Next, PolicyFactory, PolicySteps } from './types'

/** The attempt limit of a call: its own `timeout.attempt` over the service's; 0 is none. */
function limitOf (ctx: CallContext, serviceLimit: number): number {
  const t = ctx.options.timeout
  if (t !== undefined && typeof t === 'object' && t.attempt !== undefined) return t.attempt
  return serviceLimit
}

function attemptTimeoutError (service: string, method: string, path: string, limit: number): Error {
  const target = { service, method, path }
  return stamp(new TimeoutError(`${describe(target)}: attempt timeout after ${limit} ms`), target, { phase: 'attempt', timeout: limit })
}

/**
 * One attempt's signal under the service's attempt limit: the call's signal it follows, given back as it ends (so the
 * total timeout's `DeadlineSignal`, which this extends, is back in place before that policy looks for its own).
 */
class AttemptSignal extends DeadlineSignal {
  constructor (deadline: number, method: string, path: string, readonly parent: CallSignal | undefined) {
    super(deadline, method, path)
  }
}

/**
 * Attempt timeout (`timeout.attempt`): one attempt, its headers and its body, must end within the limit, or its
 * undici request is aborted (the socket closes: nothing keeps running upstream) and the attempt fails with a
 * `TimeoutError` of phase `'attempt'`, which the retry policy retries. The same per-attempt slot sends the opt-in
 * `deadlineHeaders`, so the remaining time they announce includes the attempt limit.
 *
 * The service's own limit is the same for every attempt, so its attempts expire in the order they start: they go
 * through one `DeadlineQueue` (one timer for the oldest, no `setTimeout` / `clearTimeout` pair, closure or promise
 * per attempt), and the policy is steps (`./chain`). An attempt with a limit of its own (the call's `timeout.attempt`)
 * gets a timer of its own.
 */
export const attemptTimeout: PolicyFactory = (service, perCall) => {
  const serviceLimit = service.options.timeout.attempt ?? 0
  const headers = service.options.deadlineHeaders
  if (!perCall && serviceLimit <= 0 && headers === undefined) return undefined
  const queue = new DeadlineQueue((signal) => attemptTimeoutError(service.name, signal.method, signal.path, serviceLimit))
  service.onClose?.(() => queue.clear())
  const steps: PolicySteps = {
    enter (ctx: CallContext, next: Next): Promise<HttpResponse> | undefined {
      const limit = limitOf(ctx, serviceLimit)
      if (limit <= 0) {
        if (headers !== undefined) setDeadlineHeaders(ctx, headers, ctx.deadline)
        return undefined
      }
      const now = performance.now()
      if (headers !== undefined) setDeadlineHeaders(ctx, headers, Math.min(ctx.deadline, now + limit))
      // The signal is this attempt's only: the retry policy above sends the next attempt with the call's own.
      if (limit !== serviceLimit) return nextWithTimeout(ctx, next, limit, () => attemptTimeoutError(service.name, ctx.method, ctx.path, limit), true)
      const parent = ctx.signal
      const signal = new AttemptSignal(now + limit, ctx.method, ctx.path, parent)
      if (parent !== undefined) signal.follow(parent)
      ctx.signal = signal
      queue.add(signal)
      return undefined
    },
    response (res: HttpResponse, ctx: CallContext): HttpResponse {
      const signal = ctx.signal
      if (signal instanceof AttemptSignal) {
        ctx.signal = signal.parent
        // The limit keeps guarding the body until it is read or closed.
        queue.release(signal, res)
      }
      return res
    },
    failure (err: unknown, ctx: CallContext): never {
      const signal = ctx.signal
      if (signal instanceof AttemptSignal) {
        ctx.signal = signal.parent
        queue.leave(signal)
      }
      throw err
    }
  }
  return steps
}
attemptTimeout.callOptions = ['timeout']

import { performance } from 'node:perf_hooks'
import type { CallSignal } from '../call-signal'
import { BulkheadRejectedError, TimeoutError, describe, stamp, type CallTarget } from '../errors'
import type { HttpResponse } from '../response'
import { closedWhileWaiting } from './backoff'
import type { CallContext, Next, Policy, PolicyFactory, ServiceRuntime } from './types'

/** A call waiting for a slot. */
interface Waiter {
  resolve: () => void
  reject: (err: unknown) => void
  timer: NodeJS.Timeout
  signal: CallSignal | undefined
  onAbort: () => void
  /** The service's `closing` signal, listened to while the call waits. */
  closing: CallSignal | undefined
  onClosing: () => void
}

function targetOf (ctx: CallContext): CallTarget {
  return { service: ctx.service.name, method: ctx.method, path: ctx.path }
}

/**
 * Bounds the calls of one service in flight (`maxConcurrent`) and waiting for a slot (`maxQueue`). A slot is held
 * from the start of the call until its response headers are back (every retry and backoff sleep included), and
 * released when the response is returned, whether or not its body is read: an unread body must not take a slot
 * for ever. Streamed bodies are bounded by the pool's `connections` instead.
 */
class Bulkhead {
  readonly policy: Policy
  private active = 0
  private readonly queue: Waiter[] = []
  private rejected = 0
  private timedOut = 0
  private readonly maxConcurrent: number
  private readonly maxQueue: number
  private readonly queueTimeout: number

  constructor (options: { maxConcurrent: number, maxQueue: number, queueTimeout: number }) {
    this.maxConcurrent = options.maxConcurrent
    this.maxQueue = options.maxQueue
    this.queueTimeout = options.queueTimeout
    this.policy = async (ctx: CallContext, next: Next): Promise<HttpResponse> => {
      // A free slot implies an empty queue: release() hands slots to waiters first.
      if (this.active < this.maxConcurrent) this.active++
      else await this.wait(ctx)
      try {
        return await next(ctx)
      } finally {
        this.release()
      }
    }
  }

  stats (): Record<string, number> {
    return {
      maxConcurrent: this.maxConcurrent,
      maxQueue: this.maxQueue,
      active: this.active,
      queued: this.queue.length,
      rejected: this.rejected,
      queueTimeouts: this.timedOut
    }
  }

  private async wait (ctx: CallContext): Promise<void> {
    if (this.queue.length >= this.maxQueue) {
      this.rejected++
      const target = targetOf(ctx)
      throw stamp(new BulkheadRejectedError(
        `${describe(target)}: bulkhead full (${this.maxConcurrent} in flight, ${this.queue.length} waiting)`), target)
    }
    const signal = ctx.signal
    if (signal !== undefined && signal.aborted) throw signal.reason
    const closing = ctx.service.closing
    if (closing !== undefined && closing.aborted) throw closedWhileWaiting(ctx)
    const left = ctx.deadline === Infinity ? Infinity : ctx.deadline - performance.now()
    const limit = Math.max(0, Math.min(this.queueTimeout, left))
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        timer: setTimeout(() => {
          this.remove(waiter)
          this.timedOut++
          const target = targetOf(ctx)
          const why = limit < this.queueTimeout ? 'the inbound request\'s deadline passed' : `no slot within queueTimeout ${limit} ms`
          reject(stamp(new TimeoutError(`${describe(target)}: waited for a bulkhead slot: ${why}`), target,
            { phase: 'queue', timeout: Math.round(limit) }))
        }, limit),
        onAbort: () => {
          this.remove(waiter)
          reject((signal as CallSignal).reason)
        },
        closing,
        onClosing: () => {
          this.remove(waiter)
          reject(closedWhileWaiting(ctx))
        }
      }
      if (signal !== undefined) signal.once('abort', waiter.onAbort)
      if (closing !== undefined) closing.once('abort', waiter.onClosing)
      this.queue.push(waiter)
    })
  }

  /** Frees a slot, or hands it straight to the first waiter. */
  private release (): void {
    const waiter = this.queue.shift()
    if (waiter === undefined) {
      this.active--
      return
    }
    this.settle(waiter)
    waiter.resolve()
  }

  private remove (waiter: Waiter): void {
    const i = this.queue.indexOf(waiter)
    if (i !== -1) this.queue.splice(i, 1)
    this.settle(waiter)
  }

  private settle (waiter: Waiter): void {
    clearTimeout(waiter.timer)
    waiter.signal?.removeListener('abort', waiter.onAbort)
    waiter.closing?.removeListener('abort', waiter.onClosing)
  }
}

/**
 * Bulkhead: overflow past `maxConcurrent` + `maxQueue` fails at once with `BulkheadRejectedError` (503); a queued
 * call gives up after `queueTimeout` (or the inbound deadline) with `TimeoutError` (phase `queue`, 504), at once
 * when its signal aborts, and with `ClientClosedError` when the service's `closeTimeout` passes while it waits.
 * This, not undici's unbounded queue, bounds memory under overload.
 */
export const bulkhead: PolicyFactory = (service) => {
  const options = service.options.bulkhead
  if (options === undefined) return undefined
  return service.shared('bulkhead', () => {
    const created = new Bulkhead(options)
    service.addStats('bulkhead', () => created.stats())
    return created
  }).policy
}

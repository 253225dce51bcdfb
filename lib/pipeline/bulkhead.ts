import { AsyncResource } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import type { AbortListener, CallSignal } from '../call-signal'
import { publishBulkheadAdmitted, publishBulkheadQueued, publishBulkheadRejected } from '../diagnostics/publish'
import { BulkheadRejectedError, TimeoutError, describe, stamp, type CallTarget } from '../errors'
import type { HttpResponse } from '../response'
import { abandonedRequestsOf, type AbandonedRequests } from './abandoned-requests'
import { closedWhileWaiting } from './backoff'
import type { CallContext, Next, PolicyFactory, PolicySteps, ServiceRuntime } from './types'

/**
 * A call waiting for a slot: one object, no closure. Waiters form a doubly linked FIFO list, so a call that gives up
 * (its signal aborts, it times out) leaves from anywhere in O(1), even with 10,000 waiting.
 *
 * An AsyncResource made in the waiting call's context: the call gets its slot when another call lets go of one, in
 * that call's context, and runs on in its own (`start`), so its attempts, retries and log lines see its own
 * AsyncLocalStorage stores.
 */
class Waiter extends AsyncResource implements AbortListener {
  prev: Waiter | null = null
  next: Waiter | null = null
  readonly ctx: CallContext
  readonly stage: Next
  readonly resolve: (res: HttpResponse) => void
  readonly reject: (err: unknown) => void
  /** `performance.now()` time at which it gives up after `queueTimeout` (the bulkhead's one timer watches it). */
  readonly expiresAt: number
  private readonly bulkhead: Bulkhead

  constructor (
    bulkhead: Bulkhead, ctx: CallContext, stage: Next, expiresAt: number,
    resolve: (res: HttpResponse) => void, reject: (err: unknown) => void
  ) {
    super('fastify-http-services:bulkhead-waiter')
    this.bulkhead = bulkhead
    this.ctx = ctx
    this.stage = stage
    this.expiresAt = expiresAt
    this.resolve = resolve
    this.reject = reject
  }

  /** The call's signal aborted: it leaves the queue with the signal's reason. */
  onSignalAbort (): void {
    this.bulkhead.abandon(this, (this.ctx.signal as CallSignal).reason)
  }
}

function targetOf (ctx: CallContext): CallTarget {
  return { service: ctx.service.name, method: ctx.method, path: ctx.path }
}

/**
 * Bounds the calls of one service in flight (`maxConcurrent`) and waiting for a slot (`maxQueue`). A slot is held
 * from the start of the call until its response headers are back (every retry and backoff sleep included), and
 * released when the response is returned, whether or not its body is read: an unread body must not take a slot
 * for ever. Streamed bodies are bounded by the pool's `connections` instead.
 *
 * Written for a full queue: a waiting call is one `Waiter` in a linked list; one timer per bulkhead, armed for the
 * first waiter in line, stands for every waiter's `queueTimeout` (they expire in the order they came); a call's
 * total timeout or deadline ends its wait through its signal (the deadline policy sits outside the bulkhead); the
 * service's `closing` signal is listened to once, while anything waits.
 *
 * A call that gave up while its request waited in undici for a connection settles at once, but undici keeps the
 * request until it gets to it (see `./abandoned-requests`): each such request keeps a slot busy until then. Freeing
 * the slot with the call would let every call that times out in undici's queue make room for one more, and that
 * queue has no bound; holding it keeps what undici holds for this service within `maxConcurrent`.
 */
class Bulkhead implements AbortListener {
  /** Steps (`./chain`): a call that finds a free slot goes on with no promise of the bulkhead's; one that waits is taken. */
  readonly policy: PolicySteps
  private active = 0
  private head: Waiter | null = null
  private tail: Waiter | null = null
  private queued = 0
  private rejected = 0
  private timedOut = 0
  /** Armed for the first waiter in line without a timer of its own. */
  private timer: NodeJS.Timeout | undefined = undefined
  /** The closing signal listened to while the queue is not empty. */
  private closing: CallSignal | undefined = undefined
  private readonly maxConcurrent: number
  private readonly maxQueue: number
  private readonly queueTimeout: number
  private readonly released: (res: HttpResponse) => HttpResponse
  private readonly failed: (err: unknown) => never
  /** Requests undici still holds for calls that are over: each takes a slot. */
  private readonly abandoned: AbandonedRequests

  constructor (options: { maxConcurrent: number, maxQueue: number, queueTimeout: number }, abandoned: AbandonedRequests) {
    this.maxConcurrent = options.maxConcurrent
    this.maxQueue = options.maxQueue
    this.queueTimeout = options.queueTimeout
    this.abandoned = abandoned
    abandoned.onDrop = this.admit
    this.released = (res) => {
      this.release()
      return res
    }
    this.failed = (err) => {
      this.release()
      throw err
    }
    this.policy = {
      enter: (ctx, next) => {
        // A free slot implies an empty queue: release() and admit() hand slots to waiters first.
        if (this.active + this.abandoned.count < this.maxConcurrent) {
          this.active++
          return undefined
        }
        return this.enqueue(ctx, next)
      },
      response: this.released,
      failure: this.failed
    }
  }

  stats (): Record<string, number> {
    return {
      maxConcurrent: this.maxConcurrent,
      maxQueue: this.maxQueue,
      active: this.active,
      queued: this.queued,
      rejected: this.rejected,
      queueTimeouts: this.timedOut,
      abandoned: this.abandoned.count
    }
  }

  /** Zeroes the counters since start-up; the calls holding a slot or waiting for one keep their place. */
  resetCounters (): void {
    this.rejected = 0
    this.timedOut = 0
  }

  /** Runs a call that got its slot after waiting; the slot is released when the call settles. */
  private run (ctx: CallContext, next: Next): Promise<HttpResponse> {
    let promise: Promise<HttpResponse>
    try {
      promise = next(ctx)
    } catch (err) {
      this.release()
      return Promise.reject(err)
    }
    return promise.then(this.released, this.failed)
  }

  private enqueue (ctx: CallContext, next: Next): Promise<HttpResponse> {
    if (this.queued >= this.maxQueue) {
      this.rejected++
      publishBulkheadRejected(ctx, this.active, this.queued, this.maxConcurrent, this.maxQueue, 'full', undefined)
      const target = targetOf(ctx)
      return Promise.reject(stamp(new BulkheadRejectedError(
        `${describe(target)}: bulkhead full (${this.maxConcurrent} in flight, ${this.queued} waiting)`), target))
    }
    const signal = ctx.signal
    if (signal !== undefined && signal.aborted) return Promise.reject(signal.reason)
    const closing = ctx.service.closing
    if (closing !== undefined && closing.aborted) return Promise.reject(closedWhileWaiting(ctx))
    const now = performance.now()
    const expiresAt = now + this.queueTimeout
    return new Promise<HttpResponse>((resolve, reject) => {
      const waiter = new Waiter(this, ctx, next, expiresAt, resolve, reject)
      if (this.timer === undefined) this.timer = setTimeout(this.expire, this.queueTimeout)
      if (this.tail === null) {
        this.head = waiter
        if (closing !== undefined) {
          this.closing = closing
          closing.on('abort', this)
        }
      } else {
        this.tail.next = waiter
        waiter.prev = this.tail
      }
      this.tail = waiter
      this.queued++
      if (signal !== undefined) signal.on('abort', waiter)
      publishBulkheadQueued(ctx, this.active, this.queued, this.maxConcurrent, this.maxQueue)
    })
  }

  /** Frees a slot, or hands it straight to the first waiter (unless abandoned requests hold every slot). */
  private release (): void {
    const waiter = this.head
    if (waiter === null || this.active + this.abandoned.count > this.maxConcurrent) {
      this.active--
      return
    }
    this.unlink(waiter)
    waiter.runInAsyncScope(this.start, this, waiter)
  }

  /** A waiter got its slot: its call goes on (in its own context: see `Waiter`). */
  private start (w: Waiter): void {
    this.admitted(w)
    this.run(w.ctx, w.stage).then(w.resolve, w.reject)
  }

  /** undici dropped an abandoned request: its slot goes to the first waiter. */
  private readonly admit = (): void => {
    for (let w = this.head; w !== null && this.active + this.abandoned.count < this.maxConcurrent; w = this.head) {
      this.unlink(w)
      this.active++
      w.runInAsyncScope(this.start, this, w)
    }
  }

  /** A waiter got its slot (published with how long it waited). */
  private admitted (w: Waiter): void {
    publishBulkheadAdmitted(w.ctx, this.active, this.queued, this.maxConcurrent, this.maxQueue, w.expiresAt - this.queueTimeout)
  }

  /** A waiter gives up: it leaves the queue and its call fails with `err`. */
  abandon (waiter: Waiter, err: unknown): void {
    if (waiter.prev === null && this.head !== waiter) return // not waiting any more
    this.unlink(waiter)
    waiter.reject(err)
  }

  /** The service closed while calls waited: each fails with its own `ClientClosedError`. */
  onSignalAbort (): void {
    for (let w = this.head; w !== null; w = this.head) this.abandon(w, closedWhileWaiting(w.ctx))
  }

  private unlink (waiter: Waiter): void {
    const { prev, next } = waiter
    if (prev === null) this.head = next
    else prev.next = next
    if (next === null) this.tail = prev
    else next.prev = prev
    waiter.prev = null
    waiter.next = null
    this.queued--
    waiter.ctx.signal?.removeListener('abort', waiter)
    if (this.head === null) {
      this.closing?.removeListener('abort', this)
      this.closing = undefined
      if (this.timer !== undefined) {
        clearTimeout(this.timer)
        this.timer = undefined
      }
    }
  }

  /** The queue timer fired: the waiters whose `queueTimeout` is up give up; it is armed for the next one. */
  private readonly expire = (): void => {
    this.timer = undefined
    const now = performance.now()
    // Waiters expire in queue order: the first one left is the next due.
    for (let w = this.head; w !== null; w = this.head) {
      if (w.expiresAt > now) {
        this.timer = setTimeout(this.expire, w.expiresAt - now)
        return
      }
      this.timedOut++
      this.abandon(w, this.expired(w, this.queueTimeout, `no slot within queueTimeout ${this.queueTimeout} ms`))
      publishBulkheadRejected(w.ctx, this.active, this.queued, this.maxConcurrent, this.maxQueue, 'timeout', w.expiresAt - this.queueTimeout)
    }
  }

  private expired (w: Waiter, limit: number, why: string): Error {
    const target = targetOf(w.ctx)
    return stamp(new TimeoutError(`${describe(target)}: waited for a bulkhead slot: ${why}`), target,
      { phase: 'queue', timeout: Math.round(limit) })
  }
}

/**
 * Bulkhead: overflow past `maxConcurrent` + `maxQueue` fails at once with `BulkheadRejectedError` (503); a queued
 * call gives up after `queueTimeout` with `TimeoutError` (phase `queue`, 504), at once when its signal aborts (the
 * caller's, or its total timeout or deadline: phase `total`), and with `ClientClosedError` when the service's `closeTimeout` passes while it waits.
 * This, not undici's unbounded queue, bounds memory under overload.
 */
export const bulkhead: PolicyFactory = (service) => {
  const options = service.options.bulkhead
  if (options === undefined) return undefined
  return service.shared('bulkhead', () => {
    const created = new Bulkhead(options, abandonedRequestsOf(service))
    service.addStats('bulkhead', () => created.stats())
    service.onReset?.(() => created.resetCounters())
    return created
  }).policy
}

import { performance } from 'node:perf_hooks'
import { bodyDone } from '../body-done'
import { CallSignal, type AbortListener } from '../call-signal'
import type { HttpResponse } from '../response'

/** The signal of one call under a service's total timeout: when it expires, and the call it names then. */
export class DeadlineSignal extends CallSignal {
  /** Set once the pipeline has settled: from then on, no listener left means the call is over. */
  private settledIn: DeadlineQueue | undefined = undefined
  /** @internal The queue holding this signal, and its neighbours there (see `DeadlineQueue`). */
  queue: DeadlineQueue | undefined = undefined
  /** @internal */
  prev: DeadlineSignal | undefined = undefined
  /** @internal */
  next: DeadlineSignal | undefined = undefined

  constructor (readonly deadline: number, readonly method: string, readonly path: string) {
    super()
  }

  /**
   * The call's pipeline has settled: only its response body may still need guarding. Leaves the queue now when
   * nothing listens any more, else when undici drops its listener as the body closes.
   */
  settle (queue: DeadlineQueue): void {
    if (this.listening) {
      this.settledIn = queue
    } else {
      queue.leave(this)
    }
  }

  override removeListener (event: 'abort', fn: (() => void) | AbortListener): this {
    super.removeListener(event, fn)
    if (this.settledIn !== undefined && !this.listening) {
      this.settledIn.delete(this)
      this.settledIn = undefined
      // Long-lived parents (an inbound request's signal) must not keep a listener per finished call.
      this.unlink()
    }
    return this
  }
}

/**
 * The total timeouts of one service, all of the same length, so they expire in the order they were set: a list in
 * that order and one timer for its oldest entry replace a `setTimeout` / `clearTimeout` pair per call (DESIGN.md,
 * "The hot path"). A call leaves the list when it is over (its pipeline settled and its body closed), so only calls
 * in flight are held.
 *
 * The list runs through the signals themselves (`prev` / `next`), not a `Set`: a long-lived Set that every call
 * enters and leaves made each young-generation GC several times slower (its table, old by then, kept pointing at
 * new signals), which cost more than the rest of the call path (measured: 1.4 µs per call in-process, 0.69x the
 * floor's throughput in the bench's process with several clients).
 */
export class DeadlineQueue {
  private head: DeadlineSignal | undefined = undefined
  private tail: DeadlineSignal | undefined = undefined
  private count = 0
  private timer: NodeJS.Timeout | undefined = undefined
  /** The abort reason of an expired signal. */
  private readonly expire: (signal: DeadlineSignal) => unknown

  constructor (expire: (signal: DeadlineSignal) => unknown) {
    this.expire = expire
  }

  /** Adds a signal; its deadline must not be earlier than any already queued. */
  add (signal: DeadlineSignal): void {
    if (signal.queue !== undefined) return
    signal.queue = this
    const tail = this.tail
    if (tail === undefined) this.head = signal
    else {
      tail.next = signal
      signal.prev = tail
    }
    this.tail = signal
    this.count++
    if (this.timer === undefined) this.arm(signal.deadline)
  }

  /** Drops a signal whose call is over (nothing when it is not in this queue). */
  delete (signal: DeadlineSignal): void {
    if (signal.queue !== this) return
    const { prev, next } = signal
    if (prev === undefined) this.head = next
    else prev.next = next
    if (next === undefined) this.tail = prev
    else next.prev = prev
    signal.queue = signal.prev = signal.next = undefined
    this.count--
  }

  /**
   * The call (or attempt) of `signal` was answered with `res`: it leaves now, or once undici drops its listener as the
   * body closes (`DeadlineSignal.settle`). A body that can hold no data may never close: it leaves now.
   */
  release (signal: DeadlineSignal, res: HttpResponse): void {
    if (bodyDone(res)) this.leave(signal)
    else signal.settle(this)
  }

  /** The call (or attempt) of `signal` is over: off the queue, and detached from the signals it follows. */
  leave (signal: DeadlineSignal): void {
    this.delete(signal)
    signal.unlink()
  }

  private arm (at: number): void {
    if (!Number.isFinite(at)) return
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(at - performance.now())))
    // Calls in flight keep the process alive through their sockets and sleeps; the queue itself must not.
    this.timer.unref()
  }

  private readonly fire = (): void => {
    this.timer = undefined
    const now = performance.now()
    for (let signal = this.head; signal !== undefined; signal = this.head) {
      if (signal.deadline > now) {
        this.arm(signal.deadline)
        return
      }
      this.delete(signal)
      signal.abort(this.expire(signal))
    }
  }

  /** Calls in flight under the total timeout. */
  get size (): number {
    return this.count
  }

  /** Stops the timer (service closing); queued signals are dropped unaborted. */
  clear (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    while (this.head !== undefined) this.delete(this.head)
  }
}

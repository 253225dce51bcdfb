import { performance } from 'node:perf_hooks'
import { CallSignal, type AbortListener } from '../call-signal'

/** The signal of one call under a service's total timeout: when it expires, and the call it names then. */
export class DeadlineSignal extends CallSignal {
  /** Set once the pipeline has settled: from then on, no listener left means the call is over. */
  private settledIn: DeadlineQueue | undefined = undefined

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
      queue.delete(this)
      this.unlink()
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
 * The total timeouts of one service, all of the same length, so they expire in the order they were set: an
 * insertion-ordered Set and one timer for its oldest entry replace a `setTimeout` / `clearTimeout` pair per call
 * (DESIGN.md, "The hot path"). A call leaves the set when it is over (its pipeline settled and its body closed),
 * so only calls in flight are held.
 */
export class DeadlineQueue {
  private readonly items = new Set<DeadlineSignal>()
  private timer: NodeJS.Timeout | undefined = undefined
  /** The abort reason of an expired signal. */
  private readonly expire: (signal: DeadlineSignal) => unknown

  constructor (expire: (signal: DeadlineSignal) => unknown) {
    this.expire = expire
  }

  /** Adds a signal; its deadline must not be earlier than any already queued. */
  add (signal: DeadlineSignal): void {
    this.items.add(signal)
    if (this.timer === undefined) this.arm(signal.deadline)
  }

  /** Drops a signal whose call is over. */
  delete (signal: DeadlineSignal): void {
    this.items.delete(signal)
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
    for (const signal of this.items) {
      if (signal.deadline > now) {
        this.arm(signal.deadline)
        return
      }
      this.items.delete(signal)
      signal.abort(this.expire(signal))
    }
  }

  /** Calls in flight under the total timeout. */
  get size (): number {
    return this.items.size
  }

  /** Stops the timer (service closing); queued signals are dropped unaborted. */
  clear (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.items.clear()
  }
}

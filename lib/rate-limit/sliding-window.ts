import type { AdjustableRateLimiter, RateLimiterStats } from './limiter'

/** Options of a sliding window. */
export interface SlidingWindowOptions {
  /** Permits per window. */
  limit: number
  /** Window length in milliseconds. */
  window: number
}

/**
 * An exact sliding window (a log of the last `limit` permit times): no span of `window` ms ever holds more than
 * `limit` permits, unlike fixed windows, which allow twice the limit around a window edge. Memory is one number
 * per permit of the limit (8 bytes × `limit`). Permits may be reserved ahead, in order, like the token bucket's.
 */
export class SlidingWindow implements AdjustableRateLimiter {
  private readonly baseWindow: number
  private window: number
  private readonly times: Float64Array
  /** Index of the oldest permit time, which is also where the next one is written. */
  private next = 0
  private latest = -Infinity

  constructor (options: SlidingWindowOptions) {
    this.baseWindow = options.window
    this.window = options.window
    this.times = new Float64Array(Math.max(1, Math.floor(options.limit))).fill(-Infinity)
  }

  acquire (now: number, maxWait: number): number {
    // Kept monotonic so the ring stays ordered when an adaptive change shortens the window.
    const at = Math.max(now, this.times[this.next] + this.window, this.latest)
    const wait = at - now
    if (wait > maxWait) return wait
    this.times[this.next] = at
    this.latest = at
    this.next = this.next + 1 === this.times.length ? 0 : this.next + 1
    return wait
  }

  onResponse (): void {}

  /** Scales the rate by stretching the window: `limit` per `window / factor`. */
  setFactor (factor: number): void {
    this.window = this.baseWindow / factor
  }

  reset (): void {
    this.window = this.baseWindow
    this.times.fill(-Infinity)
    this.next = 0
    this.latest = -Infinity
  }

  stats (now: number): RateLimiterStats {
    const since = now - this.window
    let used = 0
    for (const t of this.times) if (t > since) used++
    const limit = this.times.length
    return { available: limit - used, rate: limit * this.baseWindow / this.window, interval: this.baseWindow, limit }
  }
}

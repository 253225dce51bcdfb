import type { AdjustableRateLimiter, RateLimiter, RateLimiterStats } from './limiter'

/** Bounds and step of the adaptive rate, as fractions of the configured rate. */
export interface AdaptiveOptions {
  /** Lowest rate. */
  floor: number
  /** Highest rate. */
  ceiling: number
  /** Added back after each successful response. */
  increase: number
}

/**
 * AIMD over another limiter: a 429 from upstream halves the rate (down to `floor`), each success (status < 400)
 * adds `increase` back (up to `ceiling`). Only a 429 to a request sent after the last decrease lowers the rate
 * again, as TCP does per round trip: the 429s of a burst sent at the old rate count once, not once each.
 */
export class AdaptiveRateLimiter implements RateLimiter {
  private readonly inner: AdjustableRateLimiter
  private readonly floor: number
  private readonly ceiling: number
  private readonly increase: number
  private factor: number
  private lastDecrease = -Infinity
  private decreases = 0
  private readonly initial: number
  readonly shared?: () => 'redis' | 'local'

  constructor (inner: AdjustableRateLimiter, options: AdaptiveOptions) {
    this.inner = inner
    if (inner.shared !== undefined) this.shared = () => (inner.shared as () => 'redis' | 'local')()
    this.floor = options.floor
    this.ceiling = Math.max(options.ceiling, options.floor)
    this.increase = options.increase
    this.initial = Math.min(Math.max(1, this.floor), this.ceiling)
    this.factor = this.initial
    if (this.factor !== 1) inner.setFactor(this.factor, 0)
  }

  reset (): void {
    this.inner.reset()
    this.factor = this.initial
    this.lastDecrease = -Infinity
    this.decreases = 0
    if (this.factor !== 1) this.inner.setFactor(this.factor, 0)
  }

  acquire (now: number, maxWait: number): number | Promise<number> {
    return this.inner.acquire(now, maxWait)
  }

  onResponse (status: number, sentAt: number, now: number): void {
    if (status === 429) {
      if (sentAt < this.lastDecrease || this.factor <= this.floor) return
      this.factor = Math.max(this.floor, this.factor / 2)
      this.lastDecrease = now
      this.decreases++
      this.inner.setFactor(this.factor, now)
    } else if (status < 400 && this.factor < this.ceiling) {
      this.factor = Math.min(this.ceiling, this.factor + this.increase)
      this.inner.setFactor(this.factor, now)
    }
  }

  stats (now: number): RateLimiterStats {
    return { ...this.inner.stats(now), factor: this.factor, decreases: this.decreases }
  }
}

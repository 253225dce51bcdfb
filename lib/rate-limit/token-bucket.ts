import type { AdjustableRateLimiter, RateLimiterStats } from './limiter'

/** Options of a token bucket. */
export interface TokenBucketOptions {
  /** Tokens added per `interval`. */
  rate: number
  /** Refill interval in milliseconds. */
  interval: number
  /** Capacity: the most tokens that may be spent at once after a quiet period. */
  burst: number
}

// Tokens are fractional; without a little slack, 0.9999999 tokens left by float arithmetic would deny a permit.
const kSlack = 1e-9

/**
 * A token bucket refilled continuously at `rate / interval` tokens per millisecond, holding at most `burst`.
 * A permit costs one token. When the bucket is empty a permit may be reserved ahead: the balance goes negative,
 * so callers that wait are served in order and never more than the rate.
 */
export class TokenBucket implements AdjustableRateLimiter {
  private readonly interval: number
  private readonly baseRate: number
  private readonly basePerMs: number
  private readonly baseBurst: number
  private perMs: number
  private factor = 1
  private capacity: number
  private tokens: number
  private last: number | undefined = undefined

  constructor (options: TokenBucketOptions) {
    this.interval = options.interval
    this.baseRate = options.rate
    this.basePerMs = options.rate / options.interval
    this.baseBurst = options.burst
    this.perMs = this.basePerMs
    this.capacity = Math.max(1, options.burst)
    this.tokens = this.capacity
  }

  acquire (now: number, maxWait: number): number {
    this.refill(now)
    if (this.tokens >= 1 - kSlack) {
      this.tokens -= 1
      return 0
    }
    const wait = (1 - this.tokens) / this.perMs
    if (wait <= maxWait) this.tokens -= 1
    return wait
  }

  onResponse (): void {}

  setFactor (factor: number, now: number): void {
    this.refill(now)
    this.factor = factor
    this.perMs = this.basePerMs * factor
    // A lower rate also shrinks the burst: after a 429 a full burst at the old size is what the upstream refused.
    this.capacity = Math.max(1, this.baseBurst * factor)
    if (this.tokens > this.capacity) this.tokens = this.capacity
  }

  reset (): void {
    this.factor = 1
    this.perMs = this.basePerMs
    this.capacity = Math.max(1, this.baseBurst)
    this.tokens = this.capacity
    this.last = undefined
  }

  stats (now: number): RateLimiterStats {
    this.refill(now)
    return {
      available: Math.max(0, Math.floor(this.tokens + kSlack)),
      rate: this.baseRate * this.factor,
      interval: this.interval,
      burst: this.capacity
    }
  }

  private refill (now: number): void {
    const last = this.last
    if (last === undefined || now > last) {
      if (last !== undefined) this.tokens = Math.min(this.capacity, this.tokens + (now - last) * this.perMs)
      this.last = now
    }
  }
}

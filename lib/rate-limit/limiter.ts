/**
 * A client-side rate limiter: permits for outbound calls, over some shared or local state.
 *
 * Kept small and async-capable so a store shared by several instances of the app (Redis) can implement it the
 * same way as the in-memory ones: every method takes the current time (milliseconds on one monotonic clock, e.g.
 * `performance.now()`) instead of reading a clock itself, which also makes the limiters testable without timers.
 */
export interface RateLimiter {
  /**
   * Asks for one permit at time `now`, waiting at most `maxWait` ms for it. Returns the milliseconds until the
   * permit is valid: `0` means go now; a value up to `maxWait` means the permit is reserved for then (the caller
   * sleeps that long, and later callers queue behind it); a value above `maxWait` means no permit was taken and
   * one may be free again after that long (the caller fails, with that as its Retry-After).
   */
  acquire: (now: number, maxWait: number) => number | Promise<number>
  /**
   * Feeds back the status of an upstream response to a request sent at `sentAt` and answered at `now`.
   * Adaptive limiters lower their rate on 429 and raise it again on success; fixed limiters ignore it.
   */
  onResponse: (status: number, sentAt: number, now: number) => void
  /** A snapshot for `stats()`: at least `available` (permits that may be taken now) and `rate`. */
  stats: (now: number) => RateLimiterStats
  /**
   * Back to the state it was made in (full, at the configured rate), for `reset()` between tests. Permits already
   * reserved are not taken back: their callers still wait for them.
   */
  reset: () => void
  /**
   * A limiter shared through Redis: where its permits come from now, `redis`, or `local` while Redis is away and it
   * falls back to this process (for `stats()`). Absent on in-memory limiters.
   */
  shared?: () => 'redis' | 'local'
}

/** What a limiter reports in `stats()`. */
export interface RateLimiterStats {
  /** Permits that may be taken right now without waiting. */
  available: number
  /** Current permits per `interval` ms (after adaptive changes). */
  rate: number
  /** Length of the period `rate` counts over, in milliseconds. */
  interval: number
  [key: string]: number
}

/** A limiter whose rate can be scaled at run time (by the adaptive limiter). */
export interface AdjustableRateLimiter extends RateLimiter {
  /** Scales the configured rate by `factor` (1 = as configured) from time `now` on. */
  setFactor: (factor: number, now: number) => void
}

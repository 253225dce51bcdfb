/**
 * The rolling window of a circuit breaker: successes and failures of the last `window` ms, in `buckets` slots.
 *
 * Written here rather than taken from opossum: opossum counts through `fire()`, and a `fire()` per attempt (its
 * promise, its closures, two event emits, a latency pushed into an array per success) cost more than the whole rest
 * of the call path (measured: +1.0 to 1.6 µs per call over ~1.1 µs for the library without a breaker, and 1.17× the
 * floor's CPU per request at concurrency 64 against 1.04× without). Here an outcome is one clock read and one
 * increment.
 *
 * No timer: a slot is tagged with the bucket number (time / bucket length) it counts, and a slot whose tag is too
 * old counts as empty, so 1,000 idle breakers keep no timer and do no work (a rotation timer per breaker is what
 * opossum does by default).
 */
import { performance } from 'node:perf_hooks'

export class RollingCounts {
  private readonly bucketMs: number
  private readonly size: number
  /** Per slot: [bucket number, successes, failures]. */
  private readonly slots: Float64Array

  constructor (window: number, buckets: number) {
    this.size = buckets
    this.bucketMs = window / buckets
    this.slots = new Float64Array(buckets * 3)
    this.clear()
  }

  /** Counts one success now. */
  success (): void {
    this.slots[this.slot() + 1]++
  }

  /** Counts one failure now and returns the window's totals, which decide whether the breaker opens. */
  failure (): { calls: number, failures: number } {
    this.slots[this.slot() + 2]++
    return this.totals()
  }

  /** Calls and failures counted in the window that ends now. */
  totals (): { calls: number, failures: number } {
    const oldest = this.bucket() - this.size + 1
    const s = this.slots
    let successes = 0
    let failures = 0
    for (let i = 0; i < s.length; i += 3) {
      if (s[i] >= oldest) {
        successes += s[i + 1]
        failures += s[i + 2]
      }
    }
    return { calls: successes + failures, failures }
  }

  /** Empties the window. */
  clear (): void {
    for (let i = 0; i < this.slots.length; i += 3) {
      this.slots[i] = -Infinity
      this.slots[i + 1] = 0
      this.slots[i + 2] = 0
    }
  }

  private bucket (): number {
    return Math.floor(performance.now() / this.bucketMs)
  }

  /** The index of the current bucket's slot, emptied first if it last counted an older bucket. */
  private slot (): number {
    const bucket = this.bucket()
    const i = (bucket % this.size) * 3
    const s = this.slots
    if (s[i] !== bucket) {
      s[i] = bucket
      s[i + 1] = 0
      s[i + 2] = 0
    }
    return i
  }
}

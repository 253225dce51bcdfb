/**
 * One service's last minute for the status page: 60 one-second slots of counters and of a latency histogram, in typed
 * arrays made once. Recording a call touches a few numbers and allocates nothing; a slot is zeroed when a new second
 * reuses it. (lib/pipeline/rolling-counts.ts keeps a breaker's window of outcomes only; this one needs latencies and
 * per-second series, and lives outside the pipeline.)
 */
import { bucketOf, kBuckets, quantile } from './latency-buckets'

/** Seconds in the window: the page's "last minute". */
export const kSlots = 60

/** The counters of a slot, by index. */
export const Counter = {
  Calls: 0,
  Errors: 1,
  Retries: 2,
  /** Retries the retry budget refused. */
  BudgetRefused: 3,
  Hedges: 4,
  Fallbacks: 5,
  CacheHits: 6,
  CacheLookups: 7
} as const
export type Counter = typeof Counter[keyof typeof Counter]
const kCounters = 8

/** What the window holds over its last minute. */
export interface WindowSummary {
  /** Seconds the figures cover (up to 60: less just after the page started watching). */
  seconds: number
  counts: number[]
  p50: number | null
  p99: number | null
  /** Per completed second, oldest first (`kSlots` values): calls, failed calls, p99 latency (ms, 0 without calls). */
  series: { requests: number[], errors: number[], p99: number[] }
}

export class RollingWindow {
  /** The second (`Math.floor(ms / 1000)` of the clock) each slot holds; -1: none. */
  private readonly stamps = new Float64Array(kSlots).fill(-1)
  private readonly counts = new Uint32Array(kSlots * kCounters)
  private readonly histograms = new Uint32Array(kSlots * kBuckets)
  /** The window's histograms summed, for `summary()`: reused. */
  private readonly sum = new Uint32Array(kBuckets)
  /** Clock time (ms) since which the window counts. */
  private since = 0

  /** Forgets everything: the window counts from `now` (ms) on. */
  clear (now: number): void {
    this.stamps.fill(-1)
    this.since = now
  }

  /** The index of the slot of `now` (ms), emptied first when it held an older second. */
  private slot (now: number): number {
    const second = Math.floor(now / 1000)
    const i = second % kSlots
    if (this.stamps[i] !== second) {
      this.stamps[i] = second
      this.counts.fill(0, i * kCounters, i * kCounters + kCounters)
      this.histograms.fill(0, i * kBuckets, i * kBuckets + kBuckets)
    }
    return i
  }

  /** A call ended after `duration` ms, `failed` or not. */
  call (now: number, duration: number, failed: boolean): void {
    const i = this.slot(now)
    this.counts[i * kCounters + Counter.Calls]++
    if (failed) this.counts[i * kCounters + Counter.Errors]++
    this.histograms[i * kBuckets + bucketOf(duration)]++
  }

  /** One more of `counter` at `now`. */
  count (now: number, counter: Counter): void {
    this.counts[this.slot(now) * kCounters + counter]++
  }

  /** The bytes the window holds: the same for its whole life. */
  get byteLength (): number {
    return this.stamps.byteLength + this.counts.byteLength + this.histograms.byteLength + this.sum.byteLength
  }

  /** The last minute as of `now` (ms): totals and percentiles over it, and its per-second series. */
  summary (now: number): WindowSummary {
    const second = Math.floor(now / 1000)
    const counts = new Array<number>(kCounters).fill(0)
    const requests = new Array<number>(kSlots).fill(0)
    const errors = new Array<number>(kSlots).fill(0)
    const p99 = new Array<number>(kSlots).fill(0)
    const sum = this.sum.fill(0)
    // The current second and the 59 before it; the series leave out the current (partial) second.
    for (let s = second - kSlots + 1; s <= second; s++) {
      const i = ((s % kSlots) + kSlots) % kSlots
      if (this.stamps[i] !== s) continue
      for (let c = 0; c < kCounters; c++) counts[c] += this.counts[i * kCounters + c]
      for (let b = 0; b < kBuckets; b++) sum[b] += this.histograms[i * kBuckets + b]
    }
    for (let k = 0; k < kSlots; k++) {
      const s = second - kSlots + k
      const i = ((s % kSlots) + kSlots) % kSlots
      if (this.stamps[i] !== s) continue
      const calls = this.counts[i * kCounters + Counter.Calls]
      requests[k] = calls
      errors[k] = this.counts[i * kCounters + Counter.Errors]
      p99[k] = Math.round((quantile(this.histograms, i * kBuckets, calls, 0.99) ?? 0) * 100) / 100
    }
    const calls = counts[Counter.Calls]
    const start = Math.max(this.since, (second - kSlots + 1) * 1000)
    return {
      seconds: Math.min(kSlots, Math.max(1, (now - start) / 1000)),
      counts,
      p50: quantile(sum, 0, calls, 0.5),
      p99: quantile(sum, 0, calls, 0.99),
      series: { requests, errors, p99 }
    }
  }
}

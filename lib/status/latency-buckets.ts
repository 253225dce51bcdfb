/**
 * Fixed latency buckets for the status page's histograms: 64 buckets whose upper bounds grow by 1.25 from 0.25 ms
 * (the last holds everything past ~5 minutes). A percentile read from them is within a bucket's width (±12.5 %) of
 * the true one, in constant memory and time per call: what a dashboard needs, where HDR histograms or t-digests (no
 * well-kept package without allocation per record) would add a dependency for precision nobody reads off a page.
 */

/** How many buckets each histogram has. */
export const kBuckets = 64
const kFirst = 0.25
const kGrowth = 1.25
const kLogGrowth = Math.log(kGrowth)

/** The upper bound (ms) of bucket `i`; the last bucket has none (`Infinity`). */
export function bucketBound (i: number): number {
  return i >= kBuckets - 1 ? Infinity : kFirst * kGrowth ** i
}

/** The bucket a duration (ms) falls in: `(bound(i - 1), bound(i)]`, bucket 0 from 0. */
export function bucketOf (ms: number): number {
  if (!(ms > kFirst)) return 0
  // A hair under the exact logarithm: a duration equal to a bound lands in that bound's bucket despite rounding.
  const i = Math.ceil(Math.log(ms / kFirst) / kLogGrowth - 1e-9)
  return i >= kBuckets - 1 ? kBuckets - 1 : i
}

/**
 * The `q` quantile (0..1) of the counts `counts[offset .. offset + kBuckets)` holding `total` values: linear within
 * its bucket, as Prometheus' `histogram_quantile` does; the last bucket reports its lower bound. `null` when empty.
 */
export function quantile (counts: ArrayLike<number>, offset: number, total: number, q: number): number | null {
  if (total <= 0) return null
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (let i = 0; i < kBuckets; i++) {
    const n = counts[offset + i]
    if (n === 0) continue
    if (seen + n >= rank) {
      const low = i === 0 ? 0 : bucketBound(i - 1)
      const high = bucketBound(i)
      if (high === Infinity) return low
      return low + (high - low) * ((rank - seen) / n)
    }
    seen += n
  }
  return null
}

/**
 * The soak's pass/fail rules, as pure functions of what the app and the upstream reported.
 */
import { median } from './measure'
import type { Resources } from './soak-app'

/** One verdict line. */
export interface Check {
  name: string
  ok: boolean
  detail: string
}

const MB = 1024 * 1024

/**
 * Memory: the live heap (heapUsed right after a forced full GC, so no young-generation sawtooth) must not keep
 * growing once warm. The first quarter of the samples is warm-up (JIT code, pools filling, lazy state); of the rest,
 * the median of the last third may exceed the median of the first third by at most `max(absMB, rel × first)`.
 * Medians of thirds ignore a single odd sample (one taken mid-outage), and comparing the two ends asks exactly
 * "does it keep growing?". In steady state the live heap of the app stays within about 1.5 MB over a 2 minute run
 * (about 19 MB); 4 MB is well above that. The thirds' middles are half the run apart, so at this machine's
 * ~1,000 req/s the limit is a leak of ~400 B per request in a 20 s run and ~13 B per request in a 10 minute one.
 * The least-squares slope is printed for reading, not judged: one outage near an end tilts it.
 */
export const memoryRule = { warmup: 0.25, minSamples: 6, absMB: 4, rel: 0.1 }

/** Least-squares slope of `ys` over `xs`. */
export function slope (xs: number[], ys: number[]): number {
  const n = xs.length
  if (n < 2) return 0
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my)
    den += (xs[i] - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

/** Judges the live heap samples (bytes) taken at `t` (ms since the load started). */
export function memoryCheck (t: number[], heap: number[]): Check {
  const skip = Math.ceil(heap.length * memoryRule.warmup)
  const ys = heap.slice(skip).map((b) => b / MB)
  const xs = t.slice(skip).map((ms) => ms / 60_000)
  if (ys.length < memoryRule.minSamples) {
    return { name: 'memory', ok: true, detail: `not judged: ${ys.length} samples after warm-up, ${memoryRule.minSamples} needed (run longer)` }
  }
  const third = Math.floor(ys.length / 3)
  const first = median(ys.slice(0, third))
  const last = median(ys.slice(ys.length - third))
  const limit = Math.max(memoryRule.absMB, memoryRule.rel * first)
  const growth = last - first
  return {
    name: 'memory',
    ok: growth <= limit,
    detail: `live heap after GC, median of first/last third after warm-up: ${first.toFixed(1)} → ${last.toFixed(1)} MB ` +
      `(${sign(growth)} MB, limit +${limit.toFixed(1)} MB); slope ${sign(slope(xs, ys))} MB/min`
  }
}

/**
 * Handles and sockets, once the load has stopped and idle keep-alive sockets have timed out: every socket closed
 * (TCP sockets back to the baseline, pools empty) and at most `slack` more handles of any kind than before the
 * load (a lazily created, bounded timer is not a leak; a handle per request or per fault is).
 */
export function leakCheck (baseline: Resources, end: Resources, slack: number, waitedMs: number): Check {
  const diff: string[] = []
  for (const type of new Set([...Object.keys(baseline.byType), ...Object.keys(end.byType)])) {
    const d = (end.byType[type] ?? 0) - (baseline.byType[type] ?? 0)
    if (d !== 0) diff.push(`${type} ${d > 0 ? '+' : ''}${d}`)
  }
  const ok = end.total <= baseline.total + slack && end.sockets <= baseline.sockets && end.poolConnected === 0
  return {
    name: 'handles',
    ok,
    detail: `after the load and ${(waitedMs / 1000).toFixed(1)} s of grace: ${end.total} handles (baseline ${baseline.total}, ` +
      `slack ${slack}), ${end.sockets} TCP sockets (baseline ${baseline.sockets}), ${end.poolConnected} pool connections` +
      (diff.length > 0 ? `; by type: ${diff.join(', ')}` : '')
  }
}

/**
 * Errors: each route may answer only with the codes the configuration leads to (`expected`, from the app); the
 * harness must get an answer to every request; the app must see no uncaught exception or unhandled rejection.
 */
export function errorCheck (
  routeErrors: Record<string, number>,
  expected: Record<string, string[]>,
  fatals: Array<{ kind: string, message: string }>,
  harnessErrors: Record<string, number>
): Check {
  const bad: string[] = []
  for (const [key, n] of Object.entries(routeErrors)) {
    const [route, code] = key.split(' ')
    if (!(expected[route] ?? []).includes(code)) bad.push(`${route} ${code} ×${n}`)
  }
  for (const [code, n] of Object.entries(harnessErrors)) bad.push(`harness request failed: ${code} ×${n}`)
  const kinds = fatals.map((f) => f.kind)
  for (const kind of new Set(kinds)) bad.push(`${kind} ×${kinds.filter((k) => k === kind).length}`)
  return {
    name: 'errors',
    ok: bad.length === 0,
    detail: bad.length === 0
      ? 'only expected error codes; every request answered; no uncaught exception or unhandled rejection'
      : `unexpected: ${bad.join('; ')}`
  }
}

/**
 * Coverage: a soak that injected no faults proves nothing. Every fault kind must have been injected, and at least
 * one breaker opened during an outage. Not judged under 10 s, where an outage may not have come yet.
 */
export function coverageCheck (faults: Record<string, number>, breakerOpens: number, durationMs: number): Check {
  const missing = Object.entries(faults).filter(([, n]) => n === 0).map(([k]) => k)
  if (breakerOpens === 0) missing.push('breaker never opened')
  const judged = durationMs >= 10_000
  return {
    name: 'coverage',
    ok: !judged || missing.length === 0,
    detail: missing.length === 0
      ? `every fault injected; breakers opened ${breakerOpens} times`
      : `${judged ? '' : 'not judged (under 10 s): '}missing ${missing.join(', ')}`
  }
}

/** Parses `500ms`, `30s`, `2m` or `1h` into milliseconds. */
export function parseDuration (text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim())
  if (m === null) throw new Error(`--duration ${text}: give a number and a unit, e.g. 500ms, 30s, 2m`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']
  return Math.round(Number(m[1]) * unit)
}

function sign (n: number): string {
  return `${n >= 0 ? '+' : ''}${n.toFixed(2)}`
}

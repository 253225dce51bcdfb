import { performance } from 'node:perf_hooks'

/** Figures of one client in one round. */
export interface Sample {
  rps: number
  p50: number
  p99: number
  /** Client CPU time (user + system) per request, in microseconds. */
  cpuUs: number
  errors: number
}

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** Runs `call` from `concurrency` loops for `durationMs` and returns throughput, latency and CPU per request. */
export async function measure (call: () => Promise<unknown>, concurrency: number, durationMs: number): Promise<Sample> {
  const latencies: number[] = []
  let errors = 0
  let stop = false
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const timer = setTimeout(() => { stop = true }, durationMs)
  const end = t0 + durationMs
  const loop = async (): Promise<void> => {
    while (!stop) {
      const start = performance.now()
      try {
        await call()
      } catch {
        errors++
      }
      const now = performance.now()
      latencies.push(now - start)
      // A call that settles in microtasks only (a cache hit) never lets the timer run: the clock ends the loop too.
      if (now >= end) stop = true
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  clearTimeout(timer)
  const elapsed = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const sorted = Float64Array.from(latencies).sort()
  const n = latencies.length
  return {
    rps: n / (elapsed / 1000),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    cpuUs: (cpu.user + cpu.system) / Math.max(1, n),
    errors
  }
}

export function median (values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Formats a table with right-aligned columns. */
export function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

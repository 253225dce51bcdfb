/**
 * `npm run bench`: this library against raw undici and other clients, interleaved rounds, one table.
 *   --rounds N      rounds per concurrency (default 7)        --duration MS  per client per round (default 800)
 *   --quick         1 round of 200 ms, small memory figures (the CI smoke)
 *   --only LIST     comma list of: throughput,e2e,storm,memory
 *   --json FILE     also write every figure as JSON
 *   --clients LIST  comma list of substrings: only the throughput rows whose name contains one (the floor always runs)
 *   --no-pin        do not pin the harness and the upstream to CPUs of their own for the throughput rows (see ./pin)
 */
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { startChild, type Child } from './child'
import { clients, type BenchClient } from './clients'
import { measure, median, table, type Sample } from './measure'
import { e2e } from './e2e'
import { pinApart } from './pin'
import { storm } from './storm'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}
const quick = process.argv.includes('--quick')
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 7))
const duration = Number(arg('--duration') ?? (quick ? 200 : 800))
const only = new Set((arg('--only') ?? 'throughput,e2e,storm,memory').split(','))
const jsonFile = arg('--json')
const clientFilter = arg('--clients')?.split(',')

const fmt = (n: number, digits = 0): string => Number.isFinite(n) ? n.toFixed(digits) : '-'
const spread = (v: number[]): string => `${fmt(Math.min(...v))}–${fmt(Math.max(...v))}`

async function throughput (origin: string, report: Record<string, unknown>): Promise<void> {
  for (const concurrency of [1, 64]) {
    const open: Array<[string, BenchClient]> = []
    for (const [name, factory] of clients) {
      if (open.length > 0 && clientFilter !== undefined && !clientFilter.some((f) => name.includes(f))) continue
      open.push([name, await factory(origin)])
    }
    const timed = async (c: BenchClient, ms: number): Promise<Sample> =>
      c.measuring !== undefined ? await c.measuring(async () => await measure(c.call, concurrency, ms)) : await measure(c.call, concurrency, ms)
    for (const [, c] of open) await timed(c, quick ? 50 : 300) // warm-up
    const samples = new Map<string, Sample[]>(open.map(([n]) => [n, []]))
    const ratios = new Map<string, number[]>(open.map(([n]) => [n, []]))
    const cpuRatios = new Map<string, number[]>(open.map(([n]) => [n, []]))
    const [floorName, floorClient] = open[0]
    const others = open.slice(1)
    for (let r = 0; r < rounds; r++) {
      // The floor runs between every two rows (F A F B F … F), and each row's ratio is taken against the mean of the
      // floor just before and just after it: this VM's speed drifts within seconds, and a row measured many seconds
      // away from the floor read up to ±7 % off between two runs. The rows' order rotates each round.
      let before = await timed(floorClient, duration)
      const floorSamples = [before]
      for (let i = 0; i < others.length; i++) {
        const [name, c] = others[(i + r) % others.length]
        const s = await timed(c, duration)
        const after = await timed(floorClient, duration)
        floorSamples.push(after)
        const rps = (before.rps + after.rps) / 2
        const cpuUs = (before.cpuUs + after.cpuUs) / 2
        samples.get(name)?.push(s)
        ratios.get(name)?.push(s.rps / rps)
        cpuRatios.get(name)?.push(s.cpuUs / cpuUs)
        before = after
      }
      for (const f of floorSamples) samples.get(floorName)?.push(f)
      ratios.get(floorName)?.push(1)
      cpuRatios.get(floorName)?.push(1)
    }
    for (const [, c] of open) await c.close()
    const rows = open.map(([name]) => {
      const s = samples.get(name) as Sample[]
      const rps = s.map((x) => x.rps)
      return {
        name,
        rps: median(rps),
        spread: spread(rps),
        p50: median(s.map((x) => x.p50)),
        p99: median(s.map((x) => x.p99)),
        cpuUs: median(s.map((x) => x.cpuUs)),
        ratio: median(ratios.get(name) as number[]),
        cpuRatio: median(cpuRatios.get(name) as number[]),
        errors: s.reduce((a, x) => a + x.errors, 0)
      }
    })
    report[`throughput_c${concurrency}`] = rows
    console.log(`\nThroughput, concurrency ${concurrency} (${rounds} interleaved rounds of ${duration} ms; medians)`)
    console.log(table(['client', 'req/s', 'spread', 'p50 ms', 'p99 ms', 'CPU µs/req', 'x floor', 'CPU x floor', 'errors'],
      rows.map((x) => [x.name, fmt(x.rps), x.spread, fmt(x.p50, 2), fmt(x.p99, 2), fmt(x.cpuUs, 1), fmt(x.ratio, 2), fmt(x.cpuRatio, 2), String(x.errors)])))
  }
}

async function memory (origin: string, report: Record<string, unknown>): Promise<void> {
  const n = quick ? 100 : 1000
  const inflightN = quick ? 500 : 10_000
  const { first: idle } = await startChild<{ rssMB: number, heapMB: number }>('memory.ts', ['services', String(n), 'on'], {}, ['--expose-gc'])
  const { first: idleNoBreaker } = await startChild<{ rssMB: number, heapMB: number }>('memory.ts', ['services', String(n), 'off'], {}, ['--expose-gc'])
  const per: Record<string, { bytesPerRequest: number, rssBytesPerRequest: number }> = {}
  for (const kind of ['raw', 'lib', 'bulkhead']) {
    const { first } = await startChild<{ bytesPerRequest: number, rssBytesPerRequest: number }>('memory.ts', ['inflight', kind, origin, String(inflightN)], {}, ['--expose-gc'])
    per[kind] = first
  }
  report.memory = { idleServices: n, idle, idleNoBreaker, inflight: inflightN, per }
  console.log(`\nMemory: ${n} idle services (breakers on, the default): +${fmt(idle.rssMB, 1)} MB RSS, +${fmt(idle.heapMB, 1)} MB heap;` +
    ` with breaker: false +${fmt(idleNoBreaker.rssMB, 1)} MB RSS, +${fmt(idleNoBreaker.heapMB, 1)} MB heap`)
  console.log(table(['client', 'heap B/req', 'RSS B/req', 'heap x raw'],
    Object.entries(per).map(([k, v]) => [
      k === 'raw' ? 'undici Pool (raw)' : k === 'lib' ? 'fastify-http-services' : 'fastify-http-services + bulkhead',
      fmt(v.bytesPerRequest), fmt(v.rssBytesPerRequest), fmt(v.bytesPerRequest / per.raw.bytesPerRequest, 2)])))
}

async function main (): Promise<void> {
  const report: Record<string, unknown> = {
    node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, date: new Date().toISOString(), rounds, duration
  }
  console.log(`fastify-http-services bench: Node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model}`)
  const children: Child[] = []
  try {
    const { child: up, first } = await startChild<{ port: number }>('upstream.ts', ['ok'])
    children.push(up)
    const origin = `http://127.0.0.1:${first.port}`
    if (only.has('throughput')) {
      const pin = process.argv.includes('--no-pin') ? { pinned: false, release: () => {} } : pinApart(process.pid, up.proc.pid)
      report.pinned = pin.pinned
      console.log(pin.pinned ? 'Throughput: harness on CPU 0, upstream on its own CPU (--no-pin to share)' : 'Throughput: harness and upstream not pinned')
      try {
        await throughput(origin, report)
      } finally {
        pin.release()
      }
    }
    if (only.has('e2e')) report.e2e = await e2e(origin, { rounds, duration, quick })
    if (only.has('storm')) report.storm = await storm({ quick })
    if (only.has('memory')) {
      const { child: slow, first: s } = await startChild<{ port: number }>('upstream.ts', ['slow'], { SLOW_MS: '5000' })
      children.push(slow)
      await memory(`http://127.0.0.1:${s.port}`, report)
    }
  } finally {
    for (const c of children) await c.kill()
  }
  if (jsonFile !== undefined) writeFileSync(jsonFile, JSON.stringify(report, null, 2))
}

main().catch((err) => { console.error(err); process.exit(1) })

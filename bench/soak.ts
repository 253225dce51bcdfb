/**
 * `npm run soak`: a Fastify app using this plugin (bench/soak-app.ts, its own process) under steady load from here,
 * calling an upstream that injects faults (bench/soak-upstream.ts, its own process): resets, slow bodies, 503 with
 * Retry-After, refused connections and a breaker-tripping outage. Prints a sample row every interval and exits
 * non-zero when the live heap keeps growing, a handle or socket leaks, or an error the pipeline should have handled
 * surfaces (bench/soak-checks.ts has the rules).
 *   --duration D     how long the load runs: 500ms, 30s, 2m, 1h (default 10m)
 *   --concurrency N  requests the harness keeps in flight (default 16)
 *   --json FILE      also write the samples and the verdicts as JSON
 */
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { Pool } from 'undici'
import { startChild, type Child } from './child'
import type { AppSample, Resources } from './soak-app'
import { coverageCheck, errorCheck, leakCheck, memoryCheck, parseDuration, type Check } from './soak-checks'
import type { FaultSchedule } from './soak-upstream'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}

function options (): { duration: number, concurrency: number } {
  try {
    const duration = parseDuration(arg('--duration') ?? '10m')
    const concurrency = Number(arg('--concurrency') ?? 16)
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`--concurrency ${arg('--concurrency')}: a positive integer`)
    return { duration, concurrency }
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`)
    process.exit(2)
  }
}
const { duration, concurrency } = options()
const jsonFile = arg('--json')
/** Extra handles allowed after the load (see leakCheck). */
const slack = 2
/** Longest wait after the load for idle sockets to close (the app's keep-alive is 1 s; undici's timers are coarse). */
const graceMs = 10_000

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v))
/** About 20 samples a run, every second for a 20 s run, never more often than 100 ms nor less than every 10 s. */
const intervalMs = clamp(Math.round(duration / 20 / 100) * 100, 100, 10_000)
/**
 * An outage every minute, shorter runs scaled down to three; it lasts 30 % of its period, at most 5 s, and at least
 * 3.5 s (the app's 3 s breaker window and some) where the period allows 70 %: an outage shorter than the window left
 * the failure rate in it near 50 %, the breakers' threshold, and in the CI's 15 s run (1.5 s outages) the breakers
 * opened in one run and never in the next. Long enough, they trip, and the outage lasts past a half-open probe.
 * The flaky port is closed for a fifth of every 10 s, or of a fifth of a shorter run.
 */
const outageEvery = Math.round(clamp(duration / 3, 1000, 60_000))
const refuseEvery = Math.round(clamp(duration / 5, 200, 10_000))
const warmupMs = Math.round(clamp(duration / 10, 100, 2000))
const schedule: FaultSchedule = {
  outageEvery,
  outageFor: Math.round(Math.min(Math.max(outageEvery * 0.3, 3500), outageEvery * 0.7, 5000)),
  refuseEvery,
  refuseFor: Math.round(clamp(refuseEvery / 5, 100, 2000)),
  attemptTimeout: 500
}

const MB = 1024 * 1024
const short = (code: string): string => code.replace(/^HTTP_SERVICES_ERR_/, '')
const columns: Array<[string, number]> = [
  ['time s', 7], ['req/s', 6], ['heap MB', 7], ['RSS MB', 6], ['handles', 7], ['sockets', 7], ['pool', 4],
  ['fallbacks', 9], ['breakers', 8], ['errors by code', 0]
]
const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padStart(columns[i][1])).join('  ')
const counts = (m: Record<string, number>, name = (k: string) => k): string =>
  Object.entries(m).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${name(k)} ${v}`).join(', ') || 'none'
const bump = (m: Record<string, number>, key: string, n = 1): void => { m[key] = (m[key] ?? 0) + n }

function row (s: AppSample): string {
  const errors: Record<string, number> = {}
  for (const [key, n] of Object.entries(s.errors)) bump(errors, short(key.split(' ')[1]), n)
  const fb = Object.values(s.fallbacks).reduce((a, b) => a + b, 0)
  const letter = { closed: 'C', open: 'O', halfOpen: 'H' } as Record<string, string>
  return line([
    (s.t / 1000).toFixed(1),
    (s.served / (s.intervalMs / 1000)).toFixed(0),
    (s.heapUsed / MB).toFixed(1),
    (s.rss / MB).toFixed(0),
    String(s.resources.total),
    String(s.resources.sockets),
    String(s.resources.poolConnected),
    String(fb),
    Object.values(s.breakers).map((b) => letter[b] ?? '-').join(' '),
    Object.entries(errors).map(([k, v]) => `${k} ${v}`).join(' ')
  ])
}

interface Settled {
  resources: Resources
  waitedMs: number
  stats: Record<string, Record<string, unknown>>
  totals: { errors: Record<string, number>, fallbacks: Record<string, number> }
  fatals: Array<{ kind: string, message: string }>
}

/** Prints what happened over the run; returns how many times the breakers opened. */
function summary (settled: Settled, faults: Record<string, number>, statuses: Record<string, number>, harnessErrors: Record<string, number>): number {
  console.log(`\nfaults injected: ${counts(faults)}`)
  console.log(`responses: ${counts(statuses)}; harness errors: ${counts(harnessErrors)}`)
  console.log(`route errors: ${counts(settled.totals.errors, short)}`)
  console.log(`fallbacks served: ${counts(settled.totals.fallbacks, short)}`)
  let opens = 0
  for (const [name, s] of Object.entries(settled.stats)) {
    const b = s.breaker as { opens: number, rejected: number }
    const bh = s.bulkhead as { rejected: number, timedOut?: number }
    const r = s.retry as { retries: number, budgetExhausted: number }
    opens += b.opens
    // The library counts every call of the fallback function, those that rethrow included.
    console.log(`${name}: breaker opened ${b.opens}, rejected ${b.rejected}; bulkhead rejected ${bh.rejected}` +
      `${bh.timedOut !== undefined ? `, timed out ${bh.timedOut}` : ''}; retries ${r.retries}, budget exhausted ${r.budgetExhausted}; ` +
      `fallback called ${(s.fallback as { served: number }).served}`)
  }
  return opens
}

async function main (): Promise<number> {
  const children: Child[] = []
  // Each child is killed once: a child killed by a signal has no exit code, and a second kill() would wait for ever.
  const killAll = async (): Promise<void> => { for (const c of children.splice(0)) await c.kill() }
  // Whatever happens, nothing outlives the run by more than a minute.
  const watchdog = setTimeout(() => {
    console.error('soak: watchdog: the run did not finish in time; killing the children')
    killAll().finally(() => process.exit(2))
  }, duration + graceMs + 60_000)

  try {
    const { child: up, first: ports } = await startChild<{ port: number, flakyPort: number }>('soak-upstream.ts', [JSON.stringify(schedule)])
    children.push(up)
    const { child: app, first: ready } = await startChild<{ port: number, expected: Record<string, string[]> }>(
      'soak-app.ts', [JSON.stringify(ports), String(schedule.attemptTimeout)], {}, ['--expose-gc'])
    children.push(app)

    const samples: AppSample[] = []
    const waiters = new Map<string, { resolve: (m: unknown) => void, reject: (e: Error) => void }>()
    let stop = false
    app.proc.on('message', (m: { type: string, kind?: string, message?: string }) => {
      if (m.type === 'sample') {
        samples.push(m as AppSample)
        console.log(row(m as AppSample))
      } else if (m.type === 'fatal') {
        console.error(`soak: app ${m.kind}: ${m.message}`)
      }
      waiters.get(m.type)?.resolve(m)
    })
    let exited: Error | undefined
    app.proc.on('exit', (code, signal) => {
      stop = true
      exited = new Error(`the app exited (${signal ?? `code ${code}`}) during the run`)
      for (const w of waiters.values()) w.reject(exited)
    })
    // A send to an app that is gone fails through 'error' too; `exited` already tells.
    app.proc.on('error', () => {})
    const waitFor = async <T>(type: string, msg: object): Promise<T> => {
      if (exited !== undefined) throw exited
      const p = new Promise<T>((resolve, reject) => waiters.set(type, { resolve: resolve as (m: unknown) => void, reject }))
      app.proc.send(msg)
      return await p
    }

    console.log(`fastify-http-services soak: ${(duration / 1000).toFixed(1)} s at concurrency ${concurrency}, sample every ${intervalMs} ms; ` +
      `Node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model}`)
    console.log(`faults: outage ${schedule.outageFor} ms every ${schedule.outageEvery} ms, flaky port closed ${schedule.refuseFor} ms every ` +
      `${schedule.refuseEvery} ms; attempt timeout ${schedule.attemptTimeout} ms`)
    console.log(line(columns.map(([h]) => h)))
    console.log(line(columns.map(([h, w]) => '-'.repeat(Math.max(h.length, w)))))

    const baseline = await waitFor<{ resources: Resources }>('baseline', { cmd: 'baseline' })
    const pool = new Pool(`http://127.0.0.1:${ready.port}`, { connections: concurrency, headersTimeout: 30_000, bodyTimeout: 30_000 })
    const statuses: Record<string, number> = {}
    const harnessErrors: Record<string, number> = {}
    let n = 0
    const loop = async (): Promise<void> => {
      while (!stop) {
        const path = n++ % 2 === 0 ? '/catalog' : '/inventory'
        try {
          const res = await pool.request({ path, method: 'GET' })
          await res.body.dump()
          bump(statuses, String(res.statusCode))
        } catch (err) {
          bump(harnessErrors, (err as { code?: string }).code ?? (err as Error).name)
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
    }
    // A gentle warm-up first (two requests at a time), so cold code does not blow the attempt timeout of the first
    // requests and open both breakers before the faults even start.
    let timer = setTimeout(() => { stop = true }, warmupMs)
    await Promise.all([loop(), loop()])
    stop = false
    app.proc.send({ cmd: 'start', intervalMs })
    up.proc.send({ cmd: 'go' })
    timer = setTimeout(() => { stop = true }, duration)
    await Promise.all(Array.from({ length: concurrency }, loop))
    clearTimeout(timer)
    await pool.close()

    const settled = await waitFor<Settled>('settled', { cmd: 'settle', graceMs, slack })
    const { faults } = await up.ask<{ faults: Record<string, number> }>({ cmd: 'stats' })
    await killAll()

    const opens = summary(settled, faults, statuses, harnessErrors)
    const checks: Check[] = [
      memoryCheck(samples.map((s) => s.t), samples.map((s) => s.heapUsed)),
      leakCheck(baseline.resources, settled.resources, slack, settled.waitedMs),
      errorCheck(settled.totals.errors, ready.expected, settled.fatals, harnessErrors),
      coverageCheck(faults, opens, duration)
    ]
    console.log('')
    for (const c of checks) console.log(`${c.ok ? 'PASS' : 'FAIL'} ${c.name.padEnd(8)} ${c.detail}`)
    const failed = checks.filter((c) => !c.ok).length
    console.log(failed === 0 ? '\nsoak: PASS' : `\nsoak: FAIL (${failed} check${failed > 1 ? 's' : ''})`)
    if (jsonFile !== undefined) {
      writeFileSync(jsonFile, JSON.stringify({ node: process.version, duration, concurrency, schedule, baseline, samples, settled, faults, statuses, harnessErrors, checks }, null, 2))
    }
    return failed === 0 ? 0 : 1
  } finally {
    clearTimeout(watchdog)
    await killAll()
  }
}

main().then((code) => process.exit(code), (err) => {
  console.error(`\nsoak: FAIL: ${(err as Error).message}`)
  process.exit(2)
})

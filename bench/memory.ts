/**
 * Memory figures, each in a fresh process (run with --expose-gc). argv[2]:
 *   services <n> [on|off]         RSS/heap of n registered, opened, idle services (breakers on, the default, or off)
 *                                 over an empty process
 *   inflight <raw|lib|bulkhead> <origin> <n>   RSS/heap per request with n requests in flight against a slow upstream
 */
import { Pool } from 'undici'
import { createHttpServices } from './lib'

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

function snapshot (): { rss: number, heap: number } {
  gc(); gc()
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed }
}

async function services (n: number, breaker: boolean): Promise<object> {
  const before = snapshot()
  const options: Record<string, { baseUrl: string, breaker?: false }> = {}
  for (let i = 0; i < n; i++) options[`svc${i}`] = { baseUrl: `http://127.0.0.1:${10000 + (i % 50000)}`, ...(breaker ? {} : { breaker: false }) }
  const registry = createHttpServices({ services: options })
  await registry.open()
  const after = snapshot()
  await registry.close()
  return { rssMB: (after.rss - before.rss) / 1048576, heapMB: (after.heap - before.heap) / 1048576 }
}

async function inflight (kind: string, origin: string, n: number): Promise<object> {
  let call: () => Promise<unknown>
  let close: () => Promise<void>
  if (kind === 'raw') {
    const pool = new Pool(origin, { connections: 64 })
    call = async () => await (await pool.request({ path: '/', method: 'GET' })).body.json()
    close = async () => { await pool.destroy() }
  } else {
    const registry = createHttpServices({
      closeTimeout: 0,
      services: {
        up: {
          baseUrl: origin,
          connections: 64,
          ...(process.env.MEM_RETRY0 ? { retry: 0 } : {}),
          ...(kind === 'bulkhead' ? { bulkhead: { maxConcurrent: 64, maxQueue: n, queueTimeout: 60_000 } } : {})
        }
      }
    })
    await registry.open()
    const client = registry.client('up')
    call = async () => await client.getJson('/')
    close = async () => { await registry.close() }
  }
  await call() // warm: connection and code paths
  const before = snapshot()
  const all = Array.from({ length: n }, async () => await call().catch(() => {}))
  await new Promise((resolve) => setTimeout(resolve, 500))
  const during = snapshot()
  // The upstream is slow on purpose: abort what is still in flight rather than wait for it.
  await close()
  await Promise.all(all)
  return { bytesPerRequest: (during.heap - before.heap) / n, rssBytesPerRequest: (during.rss - before.rss) / n }
}

async function main (): Promise<void> {
  const [what, a, b, c] = process.argv.slice(2)
  const result = what === 'services' ? await services(Number(a), b !== 'off') : await inflight(a, b, Number(c))
  process.send?.(result, () => process.disconnect())
}
main().catch((err) => { console.error(err); process.exit(1) })

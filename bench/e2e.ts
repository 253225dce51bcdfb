import { Pool } from 'undici'
import { startChild } from './child'
import { measure, median, table } from './measure'

/**
 * A Fastify route calling the downstream through `request.httpClient` against the same route on a raw Pool,
 * served with `listen` in its own process and loaded from this one, interleaved.
 */
export async function e2e (origin: string, o: { rounds: number, duration: number, quick: boolean }): Promise<object> {
  const { child, first } = await startChild<{ port: number }>('e2e-server.ts', [origin])
  const server = `http://127.0.0.1:${first.port}`
  const out: Record<string, object> = {}
  try {
    for (const concurrency of [1, 64]) {
      const pool = new Pool(server, { connections: 64 })
      const load = (path: string) => async () => await (await pool.request({ path, method: 'GET' })).body.json()
      await measure(load('/raw'), concurrency, o.quick ? 50 : 300)
      await measure(load('/lib'), concurrency, o.quick ? 50 : 300)
      const raw: number[] = []
      const lib: number[] = []
      const ratio: number[] = []
      for (let r = 0; r < o.rounds; r++) {
        const order = r % 2 === 0 ? ['/raw', '/lib'] : ['/lib', '/raw']
        const got: Record<string, number> = {}
        for (const path of order) got[path] = (await measure(load(path), concurrency, o.duration)).rps
        raw.push(got['/raw'])
        lib.push(got['/lib'])
        ratio.push(got['/lib'] / got['/raw'])
      }
      await pool.close()
      out[`c${concurrency}`] = { raw: median(raw), lib: median(lib), ratio: median(ratio) }
      console.log(`\nEnd to end, Fastify route, concurrency ${concurrency} (medians of ${o.rounds} rounds)`)
      console.log(table(['route', 'req/s', 'x raw route'], [
        ['route on a raw undici Pool', median(raw).toFixed(0), '1.00'],
        ['route through request.httpClient', median(lib).toFixed(0), median(ratio).toFixed(2)]
      ]))
    }
  } finally {
    await child.kill()
  }
  return out
}

import { Pool } from 'undici'
import { createHttpServices } from './lib'
import { startChild } from './child'
import { table } from './measure'

/**
 * Retry storm: an upstream failing every other request with 503, a fixed offered load, and the upstream's count
 * of requests per offered request for: no retries, a naive 3-retry loop, this library's budgeted retries alone
 * (`breaker: false`), and its default (budgeted retries and the breaker, which opens on a 50 % failure rate and then
 * keeps all but its probes off the upstream).
 */
export async function storm (o: { quick: boolean }): Promise<object> {
  const offered = o.quick ? 200 : 3000
  const concurrency = 16
  const { child, first } = await startChild<{ port: number }>('upstream.ts', ['fail50'])
  const origin = `http://127.0.0.1:${first.port}`
  const run = async (call: () => Promise<unknown>): Promise<number> => {
    await child.ask({ cmd: 'reset' })
    let left = offered
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await call().catch(() => {})
    }))
    const { count } = await child.ask<{ count: number }>({ cmd: 'count' })
    return count / offered
  }
  const results: Record<string, number> = {}
  try {
    const pool = new Pool(origin, { connections: concurrency })
    results['no retries'] = await run(async () => { await (await pool.request({ path: '/', method: 'GET' })).body.dump() })
    results['naive loop, 3 retries'] = await run(async () => {
      for (let attempt = 0; attempt < 4; attempt++) {
        const res = await pool.request({ path: '/', method: 'GET' })
        await res.body.dump()
        if (res.statusCode < 500) return
      }
    })
    await pool.close()
    // The library's default retry policy and budget; only the backoff is shortened so the run takes seconds.
    for (const [name, breaker] of [['fastify-http-services, budgeted retries only (breaker: false)', false], ['fastify-http-services default (budgeted retries + breaker)', true]] as const) {
      const services = createHttpServices({ services: { up: { baseUrl: origin, connections: concurrency, breaker, retry: { baseDelay: 1, maxDelay: 5 } } } })
      await services.open()
      const client = services.client('up')
      results[name] = await run(async () => await client.get('/', { throwHttpErrors: false }).then(async (r) => await r.dump()))
      await services.close()
    }
  } finally {
    await child.kill()
  }
  console.log(`\nRetry storm: upstream fails 50 % with 503; ${offered} offered requests at concurrency ${concurrency}`)
  console.log(table(['client', 'upstream requests per offered request'],
    Object.entries(results).map(([k, v]) => [k, v.toFixed(2)])))
  return results
}

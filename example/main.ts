/**
 * `npm run example`: a gateway with two in-process fake downstreams. It starts, shows retries, a breaker opening
 * and the status route on its own, then keeps serving on PORT (default 3000) until Ctrl-C. `TRACING=1` first traces
 * one request with OpenTelemetry and prints its spans as a tree (./tracing.ts).
 */
import { startCatalog, startInventory, type InventoryControls } from './downstreams'
import type { FastifyInstance } from 'fastify'
import { buildGateway } from './gateway'
import type { StatusSnapshot } from '../index'
import { SpanKind } from '@opentelemetry/api'
import { spanTree, startTracing, type Tracing } from './tracing'

const controls: InventoryControls = { outage: false }

async function main (): Promise<void> {
  // Before the app: @fastify/otel hooks into Fastify as it initialises.
  const tracing = process.env.TRACING === '1' ? startTracing() : undefined
  const catalog = await startCatalog()
  const inventory = await startInventory(controls)
  const app = await buildGateway({
    catalogUrl: catalog.url,
    inventoryUrl: inventory.url,
    logger: { level: process.env.LOG_LEVEL ?? 'warn' }
  })
  app.post<{ Querystring: { on?: string } }>('/demo/outage', async (request) => {
    controls.outage = request.query.on !== 'false'
    return { outage: controls.outage }
  })
  const port = Number(process.env.PORT ?? 3000)
  const address = await app.listen({ port, host: '127.0.0.1' })

  console.log(`\nGateway listening on ${address}  (catalog ${catalog.url}, inventory ${inventory.url})\n`)
  console.log('Try:')
  console.log(`  curl ${address}/products/42            # aggregate of both services (inventory is flaky: watch the retries)`)
  console.log(`  curl ${address}/stock/unknown-1        # a downstream 404 mapped to a clean reply`)
  console.log(`  curl -o /dev/null ${address}/export.csv # a streamed download`)
  console.log(`  curl -X POST '${address}/demo/outage?on=true'   # take inventory down: the breaker opens`)
  console.log(`  curl ${address}/status                 # health, breaker states and per-service stats`)
  console.log(`  open ${address}/_services              # the live services page (JSON: /_services.json)\n`)

  if (tracing !== undefined) await traceOne(address, tracing)
  await demo(address, app)
  console.log('\nServing until Ctrl-C.')

  const stop = async (): Promise<void> => {
    await app.close()
    await Promise.all([catalog.close(), inventory.close()])
    process.exit(0)
  }
  process.once('SIGINT', () => { void stop() })
  process.once('SIGTERM', () => { void stop() })
}

/** One aggregate request, traced: its spans as a tree (the flaky inventory may show retries as sibling spans). */
async function traceOne (address: string, tracing: Tracing): Promise<void> {
  console.log('--- tracing: GET /products/sku-0, its spans ---')
  const res = await fetch(`${address}/products/sku-0`)
  await res.text()
  // The request span ends once the response is sent, just after the client has it.
  let root
  for (let i = 0; i < 100 && (root = tracing.spans().find((s) => s.kind === SpanKind.SERVER)) === undefined; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  console.log(root === undefined ? '(no request span)' : spanTree(tracing.spans(), root))
  console.log()
}

/** One line per service from the status page's JSON: what an operator's script would read. */
async function printServices (address: string): Promise<void> {
  const snapshot = await (await fetch(`${address}/_services.json`)).json() as StatusSnapshot
  for (const s of snapshot.services) {
    console.log(`  ${s.name.padEnd(10)} breaker ${String(s.breaker?.state).padEnd(8)} ${s.requestsPerSecond} req/s, ` +
      `errors ${(s.errorRate * 100).toFixed(0)} %, p99 ${s.latency.p99 ?? '-'} ms, retries ${s.retries}`)
  }
}

async function demo (address: string, app: FastifyInstance): Promise<void> {
  // The page's figures are gathered only while someone looks: this first read starts them.
  await fetch(`${address}/_services.json`)
  console.log('--- demo: 6 aggregate calls; the flaky inventory is retried (warn lines above are the retries) ---')
  for (let i = 1; i <= 6; i++) {
    const res = await fetch(`${address}/products/sku-${i}`)
    console.log(`GET /products/sku-${i} -> ${res.status} ${await res.text()}`)
  }
  console.log('\n--- demo: inventory outage; calls fail, the breaker opens, then the fallback answers at once ---')
  controls.outage = true
  for (let i = 1; i <= 8; i++) {
    const t0 = Date.now()
    const res = await fetch(`${address}/stock/sku-${i}`)
    console.log(`GET /stock/sku-${i} -> ${res.status} in ${Date.now() - t0} ms ${(await res.text()).slice(0, 120)}`)
  }
  const res = await fetch(`${address}/status`)
  console.log(`\nGET /status -> ${res.status} (inventory is critical and its breaker is open) ${await res.text()}`)
  console.log('GET /_services.json (the status page\'s data: what an operator\'s script reads):')
  await printServices(address)
  const { inventory: stats } = app.httpServices.stats()
  console.log('fastify.httpServices.stats().inventory:')
  console.log(JSON.stringify({ breaker: stats.breaker, retry: stats.retry, requests: stats.requests, attempts: stats.attempts, failures: stats.failures, failuresBy: stats.failuresBy, fallback: stats.fallback }, null, 2))
  controls.outage = false
  console.log('\n--- demo: outage over; the breaker half-opens after 5 s and the next call closes it ---')
  await new Promise((resolve) => setTimeout(resolve, 5200))
  const after = await fetch(`${address}/stock/sku-9`)
  console.log(`GET /stock/sku-9 -> ${after.status} ${await after.text()}`)
  const status = await fetch(`${address}/status`)
  console.log(`GET /status -> ${status.status} ${(await status.text()).slice(0, 200)}…`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})

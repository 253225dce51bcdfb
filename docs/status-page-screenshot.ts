/**
 * Takes docs/status-page.png, the README's picture of the status page: `npx tsx docs/status-page-screenshot.ts`
 * (needs /usr/bin/chromium). Six services on real loopback upstreams with about 20 s of traffic: one in an outage
 * (its breaker open), one with one of its two upstreams down, slow answers hedged, a retry budget at work, a cache.
 */
import { createServer, type Server } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { chromium } from 'playwright-core'
import httpServices from '../index'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** An upstream on 127.0.0.1 answering with `answer(url)`: a status and a delay. */
async function upstream (answer: (url: string) => { status: number, delay: number, headers?: Record<string, string> }): Promise<{ url: string, server: Server }> {
  const server = createServer((req, res) => {
    const { status, delay, headers } = answer(req.url ?? '/')
    setTimeout(() => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers })
      res.end(JSON.stringify({ ok: status < 400 }))
    }, delay)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server }
}

const jitter = (base: number, spread: number): number => base + Math.random() * spread

async function main (): Promise<void> {
  let inventoryDown = false
  const servers = await Promise.all([
    upstream(() => ({ status: 200, delay: jitter(4, 10) })),
    upstream(() => ({ status: Math.random() < 0.04 ? 503 : 200, delay: jitter(12, 30) })),
    upstream(() => ({ status: inventoryDown ? 503 : 200, delay: jitter(8, 10) })),
    upstream(() => ({ status: 200, delay: Math.random() < 0.1 ? 250 : jitter(20, 20) })),
    upstream(() => ({ status: 200, delay: jitter(2, 4), headers: { 'cache-control': 'max-age=5' } })),
    upstream(() => ({ status: Math.random() < 0.3 ? 503 : 200, delay: jitter(30, 40) }))
  ])
  const [billing, users, inventory, search, catalog, shipping] = servers.map((s) => s.url)
  const deadUsers = users.replace(/:\d+$/, ':1')
  const app = Fastify()
  await app.register(httpServices, {
    statusPage: true,
    services: {
      billing: { baseUrl: billing, bulkhead: { maxConcurrent: 16, maxQueue: 32 }, rateLimit: { rate: 200 } },
      users: { baseUrl: [users, deadUsers], retry: { attempts: 2, baseDelay: 5 }, breaker: { minimumRequests: 5, resetAfter: 30_000 } },
      inventory: { baseUrl: inventory, retry: { attempts: 2, baseDelay: 5 }, breaker: { minimumRequests: 10, resetAfter: 30_000 } },
      search: { baseUrl: search, hedge: { delay: 100 }, retry: false },
      catalog: { baseUrl: catalog, cache: true },
      shipping: { baseUrl: shipping, retry: { attempts: 3, baseDelay: 5, budget: { ratio: 0.1, minPerSecond: 1 } } }
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  await fetch(`http://127.0.0.1:${port}/_services.json`)

  const rates: Record<string, number> = { billing: 40, users: 15, inventory: 20, search: 12, catalog: 30, shipping: 8 }
  let running = true
  const loops = Object.entries(rates).map(async ([name, perSecond]) => {
    const client = app.httpServices.client(name)
    while (running) {
      client.getJson(`/items/${Math.floor(Math.random() * 5)}`).catch(() => {})
      await sleep(jitter(1000 / perSecond * 0.5, 1000 / perSecond))
    }
  })
  await sleep(14_000)
  inventoryDown = true
  await sleep(8_000)

  const profile = mkdtempSync(join(tmpdir(), 'fhs-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1560, height: 400 },
    deviceScaleFactor: 1
  })
  try {
    const page = await context.newPage()
    await page.goto(`http://127.0.0.1:${port}/_services`)
    await page.waitForSelector('#conn.live')
    await page.waitForSelector('tr[data-service="inventory"] td.breaker[data-state="open"]')
    await sleep(1500)
    await page.screenshot({ path: join(__dirname, 'status-page.png'), fullPage: true })
  } finally {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
    running = false
    await Promise.all(loops)
    await app.close()
    for (const s of servers) s.server.close()
  }
}

main().catch((err) => { console.error(err); process.exit(1) })

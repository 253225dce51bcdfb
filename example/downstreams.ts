import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A fake downstream running in this process on 127.0.0.1. */
export interface FakeDownstream {
  url: string
  server: Server
  close: () => Promise<void>
}

async function listen (server: Server): Promise<FakeDownstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

function json (res: import('node:http').ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers })
  res.end(text)
}

/** The healthy one: a product catalog, and a large generated file for the streaming route. */
export async function startCatalog (): Promise<FakeDownstream> {
  return await listen(createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://catalog')
    const product = /^\/products\/([\w-]+)$/.exec(url.pathname)
    if (product !== null) {
      json(res, 200, { id: product[1], name: `Product ${product[1]}`, price: 19.99 })
      return
    }
    if (url.pathname === '/export.csv') {
      const rows = Number(url.searchParams.get('rows') ?? 100_000)
      res.writeHead(200, { 'content-type': 'text/csv' })
      let i = 0
      const write = (): void => {
        while (i < rows) {
          if (!res.write(`${i},product-${i},${(i % 100) + 0.99}\n`)) { i++; res.once('drain', write); return }
          i++
        }
        res.end()
      }
      write()
      return
    }
    json(res, 404, { type: 'about:blank', title: 'Not Found', status: 404, detail: `no route ${url.pathname}` }, { 'content-type': 'application/problem+json' })
  }))
}

/** Controls of the flaky downstream. */
export interface InventoryControls {
  /** While true, every request fails with 503 (a full outage). */
  outage: boolean
}

/**
 * The flaky one: stock levels. One request in three fails with 503 (some with Retry-After), one in five is slow,
 * unknown SKUs get a 404 with an RFC 9457 problem body, and `controls.outage` fails everything.
 */
export async function startInventory (controls: InventoryControls): Promise<FakeDownstream> {
  let n = 0
  return await listen(createServer((req, res) => {
    n++
    const url = new URL(req.url ?? '/', 'http://inventory')
    if (controls.outage) { json(res, 503, { error: 'inventory is down' }); return }
    const stock = /^\/stock\/([\w-]+)$/.exec(url.pathname)
    if (stock === null) { json(res, 404, { error: { message: 'no such route' } }); return }
    const sku = stock[1]
    if (sku.startsWith('unknown')) {
      json(res, 404, { type: 'https://example.com/problems/unknown-sku', title: 'Unknown SKU', status: 404, detail: `SKU ${sku} does not exist` },
        { 'content-type': 'application/problem+json' })
      return
    }
    if (n % 3 === 0) { json(res, 503, { error: 'busy' }, n % 2 === 0 ? { 'retry-after': '1' } : {}); return }
    const delay = n % 5 === 0 ? 300 : 5
    setTimeout(() => json(res, 200, { sku, available: (sku.length * 7) % 23 }), delay)
  }))
}

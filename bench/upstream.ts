/**
 * The benchmark's downstream, run in its own process so the harness measures only the client side.
 * node:http with keep-alive and a small JSON body. Modes (argv[2]):
 *   ok        200 with a small JSON body (on `/cached`: with `cache-control: max-age=3600`, for the cache row)
 *   fail50    half the requests, at random, are a 503
 *   slow      answers after SLOW_MS (default 2000) ms
 * Sends `{ port }` to the parent over IPC once listening; answers `{ count }` to a 'count' message.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const mode = process.argv[2] ?? 'ok'
const slowMs = Number(process.env.SLOW_MS ?? 2000)
const payload = JSON.stringify({ id: 42, name: 'benchmark', tags: ['a', 'b', 'c'], ok: true })
const headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
const cachedHeaders = { ...headers, 'cache-control': 'max-age=3600' }
let count = 0

const server = createServer((req, res) => {
  count++
  if (mode === 'fail50' && Math.random() < 0.5) {
    res.writeHead(503, { 'content-length': '0' })
    res.end()
    return
  }
  if (mode === 'slow') {
    setTimeout(() => { res.writeHead(200, headers); res.end(payload) }, slowMs)
    return
  }
  res.writeHead(200, req.url === '/cached' ? cachedHeaders : headers)
  res.end(payload)
})
server.keepAliveTimeout = 60_000
server.maxRequestsPerSocket = 0

server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port })
})
process.on('message', (msg: { cmd?: string }) => {
  if (msg.cmd === 'count') process.send?.({ count })
  if (msg.cmd === 'reset') { count = 0; process.send?.({ count }) }
})
process.on('disconnect', () => process.exit(0))

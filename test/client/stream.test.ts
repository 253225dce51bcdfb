import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import httpServices from '../../index'
import { startServer } from '../helpers/server'

const kSize = 20 * 1024 * 1024
const kChunk = 64 * 1024

/** Deterministic pseudo-random bytes: chunk `i` of the 20 MB body. */
function chunk (i: number): Buffer {
  const buf = Buffer.allocUnsafe(kChunk)
  let x = (i + 1) * 2654435761 >>> 0
  for (let j = 0; j < kChunk; j += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    buf.writeUInt32LE(x, j)
  }
  return buf
}

function expectedHash (): string {
  const h = createHash('sha256')
  for (let i = 0; i < kSize / kChunk; i++) h.update(chunk(i))
  return h.digest('hex')
}

t.test('a 20 MB body streams through a route with reply.send(res.body), byte for byte, past maxResponseSize', async (t) => {
  const upstream = await startServer((req, res) => {
    if (req.url === '/missing') { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('no such file'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    let i = 0
    const n = kSize / kChunk
    const pump = (): void => {
      while (i < n) {
        if (!res.write(chunk(i++))) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const app = Fastify()
  // A 1 MiB buffering limit: the download only passes if the body is streamed, never buffered.
  await app.register(httpServices, { services: { files: { baseUrl: upstream.url, maxResponseSize: 1024 * 1024 } } })
  app.get('/download/:name', async (request, reply) => {
    const res = await request.httpClient('files').stream('GET', '/:name', { params: { name: (request.params as { name: string }).name } })
    reply.header('content-type', res.headers['content-type'])
    return reply.send(res.body)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close(); await upstream.close() })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const res = await request(`${base}/download/big.bin`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/octet-stream')
  const hash = createHash('sha256')
  let bytes = 0
  for await (const c of res.body) {
    hash.update(c as Buffer)
    bytes += (c as Buffer).length
  }
  t.equal(bytes, kSize, 'every byte arrived')
  t.equal(hash.digest('hex'), expectedHash(), 'the bytes are intact')

  const missing = await request(`${base}/download/missing`)
  t.equal(missing.statusCode, 502, 'a downstream error status is not streamed on')
  const reply = await missing.body.json() as { code: string, message: string }
  t.equal(reply.code, 'HTTP_SERVICES_ERR_STATUS')
  t.match(reply.message, /downstream answered 404$/)
  t.equal(app.httpServices.stats().files.inFlight, 0)
})

t.test('stream() with throwHttpErrors: false hands over an error body as a stream', async (t) => {
  const upstream = await startServer((_req, res) => { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('gone') })
  const app = Fastify()
  await app.register(httpServices, { services: { files: { baseUrl: upstream.url } } })
  app.get('/proxy', async (request, reply) => {
    const res = await request.httpClient('files').stream('GET', '/x', { throwHttpErrors: false })
    return reply.code(res.status).send(res.body)
  })
  t.teardown(async () => { await app.close(); await upstream.close() })
  const res = await app.inject('/proxy')
  t.equal(res.statusCode, 404)
  t.equal(res.body, 'gone')
})

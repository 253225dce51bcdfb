import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { brotliCompressSync, deflateRawSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib'
import Fastify from 'fastify'
import t from 'tap'
import {
  ConnectionError, DecompressError, HttpStatusError, ResponseTooLargeError, createHttpServices,
  type CommonServiceOptions
} from '../../index'
import { startServer, type Handler } from '../helpers/server'

const kPayload = { id: 42, name: 'compressed', tags: Array.from({ length: 200 }, (_, i) => `tag-${i}`) }
const kJson = Buffer.from(JSON.stringify(kPayload))

async function setup (t: tap.Test, handler: Handler, options: CommonServiceOptions = {}) {
  const server = await startServer(handler)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, connections: 1, ...options } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api') }
}

function send (res: ServerResponse, encoding: string | undefined, body: Buffer, status = 200): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(body.length),
    ...(encoding !== undefined ? { 'content-encoding': encoding } : {})
  })
  res.end(body)
}

const kEncoders: Array<[string, (b: Buffer) => Buffer]> = [
  ['gzip', (b) => gzipSync(b)],
  ['deflate', (b) => deflateSync(b)],
  ['br', (b) => brotliCompressSync(b)],
  ['x-gzip', (b) => gzipSync(b)]
]

for (const [encoding, encode] of kEncoders) {
  t.test(`asks for compression and decodes a ${encoding} body`, async (t) => {
    const body = encode(kJson)
    const { api, server } = await setup(t, (_req, res) => send(res, encoding, body))
    const res = await api.get('/x')
    t.equal(res.headers['content-encoding'], undefined, 'content-encoding describes bytes no longer there')
    t.equal(res.headers['content-length'], undefined, 'so does the encoded content-length')
    t.equal(res.headers['content-type'], 'application/json', 'other headers stay')
    t.same(await res.json(), kPayload)
    t.equal(server.requests[0].headers['accept-encoding'], 'gzip, deflate, br')
  })
}

t.test('undoes several codings, the last applied first, listed in one header line or several', async (t) => {
  const body = brotliCompressSync(gzipSync(kJson))
  const { api } = await setup(t, (req, res) => {
    res.setHeader('content-encoding', req.url === '/lines' ? ['gzip', 'br'] : 'GZIP, br')
    res.end(body)
  })
  t.same(await api.getJson('/one'), kPayload)
  t.same(await api.getJson('/lines'), kPayload)
})

t.test('an identity coding or no coding at all is read as sent', async (t) => {
  const { api } = await setup(t, (req, res) => send(res, req.url === '/identity' ? 'identity' : undefined, kJson))
  const identity = await api.get('/identity')
  t.equal(identity.headers['content-encoding'], 'identity')
  t.same(await identity.json(), kPayload)
  const plain = await api.get('/plain')
  t.equal(plain.headers['content-length'], String(kJson.length))
  t.same(await plain.json(), kPayload)
})

t.test('an unknown coding is passed through untouched, headers and bytes', async (t) => {
  const body = gzipSync(kJson)
  const { api } = await setup(t, (_req, res) => send(res, 'gzip, x-custom', body))
  const res = await api.get('/x')
  t.equal(res.headers['content-encoding'], 'gzip, x-custom')
  t.same(Buffer.from(await res.arrayBuffer()), body)
})

t.test('an accept-encoding set by the service or the call wins over the default', async (t) => {
  const { api, server } = await setup(t, (_req, res) => send(res, undefined, kJson), { headers: { 'Accept-Encoding': 'gzip' } })
  await api.getJson('/a')
  await api.getJson('/b', { headers: { 'accept-encoding': 'identity' } })
  t.same(server.requests.map((r) => r.headers['accept-encoding']), ['gzip', 'identity'])
})

t.test('decompress: false on the service asks for nothing and passes compressed bytes through with their headers', async (t) => {
  const body = gzipSync(kJson)
  const { api, server } = await setup(t, (_req, res) => send(res, 'gzip', body), { decompress: false })
  const res = await api.get('/x')
  t.equal(res.headers['content-encoding'], 'gzip')
  t.equal(res.headers['content-length'], String(body.length))
  t.same(Buffer.from(await res.arrayBuffer()), body)
  t.equal(server.requests[0].headers['accept-encoding'], undefined)
})

t.test('decompress per call overrides the service, in both directions', async (t) => {
  const body = gzipSync(kJson)
  const on = await setup(t, (_req, res) => send(res, 'gzip', body))
  const raw = await on.api.get('/x', { decompress: false })
  t.equal(raw.headers['content-encoding'], 'gzip')
  t.same(Buffer.from(await raw.arrayBuffer()), body)
  t.equal(on.server.requests[0].headers['accept-encoding'], undefined, 'a pass-through call does not ask for compression')
  await (await on.api.get('/x', { decompress: false, headers: { 'Accept-Encoding': 'br' } })).dump()
  t.equal(on.server.requests[1].headers['accept-encoding'], 'br', "the call's own accept-encoding is sent")

  const off = await setup(t, (_req, res) => send(res, 'gzip', body), { decompress: false })
  t.same(await off.api.getJson('/x', { decompress: true }), kPayload)
  t.equal(off.server.requests[0].headers['accept-encoding'], 'gzip, deflate, br')
})

t.test('a proxying route passes the compressed body on, and the end client can decode it', async (t) => {
  const body = gzipSync(kJson)
  const { api } = await setup(t, (req, res) => send(res, req.headers['accept-encoding'] === 'gzip' ? 'gzip' : undefined,
    req.headers['accept-encoding'] === 'gzip' ? body : kJson))
  const app = Fastify()
  app.get('/proxy', async (request, reply) => {
    const res = await api.get('/x', { decompress: false, headers: { 'accept-encoding': request.headers['accept-encoding'] } })
    return reply.status(res.status).headers(res.headers).send(res.body)
  })
  t.teardown(() => app.close())
  const gz = await app.inject({ url: '/proxy', headers: { 'accept-encoding': 'gzip' } })
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.same(JSON.parse(gunzipSync(gz.rawPayload).toString()), kPayload)
  const plain = await app.inject({ url: '/proxy' })
  t.equal(plain.headers['content-encoding'], undefined, 'a client that asked for nothing gets identity')
  t.same(plain.json(), kPayload)
})

t.test('the streamed body is the decoded stream, read with backpressure', async (t) => {
  const text = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i}\n`).join(''))
  const body = gzipSync(text)
  const { api } = await setup(t, (_req, res) => send(res, 'gzip', body), { maxResponseSize: 1024 })
  const res = await api.get('/x')
  const chunks: Buffer[] = []
  await pipeline(res.body, new Writable({
    highWaterMark: 1024,
    write (chunk: Buffer, _enc, cb) { chunks.push(chunk); setImmediate(cb) }
  }))
  t.ok(text.length > 1024 * 1024, 'much larger than maxResponseSize, which only bounds buffered reads')
  t.ok(Buffer.concat(chunks).equals(text), 'the decoded bytes, in order')
})

t.test('maxResponseSize counts decoded bytes, whatever the encoded content-length says', async (t) => {
  const small = gzipSync(Buffer.alloc(3000, 'a'))
  const large = gzipSync(Buffer.alloc(5000, 'a'))
  const { api } = await setup(t, (req, res) => send(res, 'gzip', req.url === '/small' ? small : large), { maxResponseSize: 4096 })
  t.ok(large.length < 4096, 'the encoded body fits the limit')
  t.equal((await (await api.get('/small')).text()).length, 3000)
  await t.rejects((await api.get('/large')).text(), ResponseTooLargeError)
  await t.rejects(api.getJson('/large'), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', limit: 4096, status: 200 })
})

/** Resident set size peak over a call, sampled every few milliseconds. */
async function peakRssGrowth (fn: () => Promise<unknown>): Promise<{ growth: number, result: unknown }> {
  const base = process.memoryUsage().rss
  let peak = base
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 2)
  try {
    const result = await fn().catch((err: unknown) => err)
    return { growth: Math.max(peak, process.memoryUsage().rss) - base, result }
  } finally {
    clearInterval(timer)
  }
}

const kMiB = 1024 * 1024
// One gzip member of 1 MiB of zeros is about 1 KB; gzip members may follow each other, so N of them inflate to N MiB.
const kMember = gzipSync(Buffer.alloc(kMiB))

t.test('a gzip bomb (1 MB on the wire, 1 GB and more inflated) fails with ResponseTooLargeError before it inflates', async (t) => {
  const total = 16 * 1024 // 16 GiB inflated
  let written = 0
  const { api } = await setup(t, async (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    while (!res.destroyed && written < total) {
      written++
      if (!res.write(kMember)) await Promise.race([once(res, 'drain'), once(res, 'close')])
    }
    res.end()
  })
  const { growth, result } = await peakRssGrowth(() => api.getJson('/bomb'))
  t.type(result, ResponseTooLargeError)
  t.match(result, { limit: 10 * kMiB, status: 200, service: 'api' })
  t.ok(written < total, `the upstream was cut off after ${written} of ${total} MiB-members`)
  t.ok(growth < 200 * kMiB, `resident memory grew by ${Math.round(growth / kMiB)} MiB only`)
})

t.test('a nested gzip bomb (content-encoding: gzip, gzip; a few KB for 1 GiB) fails the same way', async (t) => {
  const bomb = gzipSync(Buffer.concat(Array.from({ length: 1024 }, () => kMember)), { level: 9 })
  const { api } = await setup(t, (_req, res) => send(res, 'gzip, gzip', bomb))
  t.ok(bomb.length < 100 * 1024, `${bomb.length} bytes on the wire`)
  const { growth, result } = await peakRssGrowth(async () => await (await api.get('/bomb')).arrayBuffer())
  t.type(result, ResponseTooLargeError)
  t.ok(growth < 200 * kMiB, `resident memory grew by ${Math.round(growth / kMiB)} MiB only`)
})

t.test('a corrupt compressed body rejects with DecompressError (502), whatever the coding', async (t) => {
  const garbage = Buffer.from('this was never compressed, whatever the header says')
  const { api } = await setup(t, (req, res) => send(res, req.url?.slice(1), garbage))
  for (const encoding of ['gzip', 'deflate', 'br']) {
    const err = await api.getJson(`/${encoding}`).catch((e: unknown) => e) as DecompressError
    t.type(err, DecompressError, encoding)
    t.match(err, { code: 'HTTP_SERVICES_ERR_DECOMPRESS', statusCode: 502, status: 200, encoding, service: 'api', method: 'GET', url: `/${encoding}` })
    t.match(err.message, `cannot decode the ${encoding} response body`)
    t.ok(err.cause instanceof Error, 'the zlib error is the cause')
  }
  const text = await api.get('/gzip')
  await t.rejects(text.text(), DecompressError, 'text() too')
  const stream = await api.get('/gzip')
  await t.rejects(pipeline(stream.body, new Writable({ write (_c, _e, cb) { cb() } })), DecompressError, 'and the stream')
})

t.test('a large body (decoded as a stream) that turns corrupt midway rejects with DecompressError', async (t) => {
  const body = Buffer.from(gzipSync(randomBytes(256 * 1024)))
  body.fill(0xff, 128 * 1024, 130 * 1024)
  const { api } = await setup(t, (_req, res) => send(res, 'gzip', body))
  await t.rejects(api.get('/x').then(async (res) => await res.arrayBuffer()), { code: 'HTTP_SERVICES_ERR_DECOMPRESS', status: 200, encoding: 'gzip' })
  const stream = await api.get('/x')
  await t.rejects(pipeline(stream.body, new Writable({ write (_c, _e, cb) { cb() } })), DecompressError, 'the stream too')
})

t.test('a large body through several codings streams out whole', async (t) => {
  const data = randomBytes(512 * 1024)
  const body = gzipSync(brotliCompressSync(deflateSync(data)))
  const { api } = await setup(t, (_req, res) => send(res, 'deflate, br, gzip', body), { maxResponseSize: 1024 * 1024 })
  t.ok(body.length > 64 * 1024, 'past the size decoded in one call')
  t.ok(Buffer.from(await (await api.get('/x')).arrayBuffer()).equals(data))
})

t.test('a truncated gzip body rejects with DecompressError', async (t) => {
  const body = gzipSync(kJson)
  const { api } = await setup(t, (_req, res) => send(res, 'gzip', body.subarray(0, body.length - 12)))
  await t.rejects(api.getJson('/x'), { code: 'HTTP_SERVICES_ERR_DECOMPRESS', message: /unexpected end of file/ })
})

t.test('more than five codings is refused as a DecompressError', async (t) => {
  let body = kJson
  for (let i = 0; i < 6; i++) body = gzipSync(body)
  const { api } = await setup(t, (_req, res) => send(res, 'gzip, gzip, gzip, gzip, gzip, gzip', body))
  await t.rejects(api.getJson('/x'), { code: 'HTTP_SERVICES_ERR_DECOMPRESS', message: /more than 5 content codings/ })
})

t.test('a corrupt body nobody reads is never decoded and can be destroyed quietly', async (t) => {
  const { api, server } = await setup(t, (_req, res) => send(res, 'gzip', Buffer.from('not gzip')))
  const res = await api.get('/x')
  await new Promise((resolve) => setTimeout(resolve, 20))
  res.destroy()
  t.equal((await api.get('/y', { decompress: false })).status, 200, 'the client goes on')
  t.equal(server.requests.length, 2)
})

t.test('a connection cut mid-body is a ConnectionError, not a DecompressError', async (t) => {
  const body = gzipSync(Buffer.alloc(256 * 1024, 'x'), { level: 0 })
  const { api } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(body.length) })
    res.write(body.subarray(0, 1000), () => setTimeout(() => res.socket?.destroy(), 10))
  })
  await t.rejects(api.getJson('/x'), ConnectionError)
})

t.test('an error status with a compressed body gives an HttpStatusError with the decoded detail', async (t) => {
  const body = gzipSync(Buffer.from(JSON.stringify({ message: 'billing is down' })))
  const { api } = await setup(t, (req, res) => send(res, 'gzip', req.url === '/corrupt' ? Buffer.from('junk') : body, 503))
  await t.rejects(api.getJson('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, detail: 'billing is down' })
  const err = await api.getJson('/corrupt').catch((e: unknown) => e)
  t.type(err, HttpStatusError, 'a corrupt error body still gives the status error')
})

t.test('HEAD, 204 and 304 with a content-encoding have no body to decode', async (t) => {
  const { api } = await setup(t, (req, res) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': '1234' })
      res.end()
      return
    }
    res.writeHead(req.url === '/304' ? 304 : 204, { 'content-encoding': 'gzip' })
    res.end()
  })
  const head = await api.head('/x')
  t.equal(head.headers['content-encoding'], 'gzip', 'HEAD keeps the headers of the GET it describes')
  t.equal(head.headers['content-length'], '1234')
  t.equal(await head.json(), undefined)
  t.equal(await api.getJson('/204'), undefined)
  const notModified = await api.get('/304')
  t.equal(notModified.status, 304)
  t.equal(await notModified.text(), '')
})

t.test('an empty body that claims a coding is read as empty', async (t) => {
  const { api } = await setup(t, (req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200, { 'content-encoding': req.headers['x-coding'] as string })
      res.end()
      return
    }
    send(res, req.headers['x-coding'] as string, req.url === '/empty' ? gzipSync(Buffer.alloc(0)) : Buffer.alloc(0))
  })
  t.equal(await api.getJson('/empty', { headers: { 'x-coding': 'gzip' } }), undefined, 'a gzip of nothing')
  for (const coding of ['gzip', 'deflate', 'br']) {
    t.equal(await (await api.get('/length', { headers: { 'x-coding': coding } })).text(), '', `${coding}, content-length 0`)
    t.equal(await api.getJson('/chunked', { headers: { 'x-coding': coding } }), undefined, `${coding}, chunked`)
  }
})

t.test('decompress must be a boolean', async (t) => {
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', decompress: 'yes' as unknown as boolean } } }),
    { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'services.api.decompress', message: 'services.api.decompress: expected a boolean, got "yes"' })
  t.throws(() => createHttpServices({ defaults: { decompress: 1 as unknown as boolean }, services: {} }),
    { key: 'defaults.decompress', message: 'defaults.decompress: expected a boolean, got 1' })
})

t.test('a compressed body nobody reads yet fails quietly when its connection breaks or a timeout ends the call; reading it then rejects', async (t) => {
  const body = gzipSync(Buffer.alloc(256 * 1024, 'x'), { level: 0 })
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })
  const { api } = await setup(t, (req, res) => {
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(body.length) })
    res.write(body.subarray(0, 1000), () => {
      if (req.url === '/cut') setTimeout(() => res.socket?.destroy(), 10)
    })
  })
  const cut = await api.get('/cut')
  const slow = await api.get('/slow', { timeout: 100 })
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.same(uncaught, [], 'no uncaught exception')
  await t.rejects(cut.text(), ConnectionError)
  await t.rejects(slow.text(), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
})

t.test('a coding named like an Object property (constructor, __proto__, toString) is an unknown coding, passed through', async (t) => {
  const { api } = await setup(t, (req, res) => send(res, req.url?.slice(1), kJson))
  for (const coding of ['constructor', '__proto__', 'hasownproperty']) {
    const res = await api.get(`/${coding}`)
    t.equal(res.headers['content-encoding'], coding, coding)
    t.same(Buffer.from(await res.arrayBuffer()), kJson, `${coding}: bytes as sent`)
  }
})

t.test('deflate without its zlib header (raw deflate, as some servers send) is decoded too, small or large', async (t) => {
  const large = Buffer.from(JSON.stringify({ items: Array.from({ length: 30_000 }, (_, i) => `item-${i}-${randomBytes(4).toString('hex')}`) }))
  const { api } = await setup(t, (req, res) => send(res, 'deflate', deflateRawSync(req.url === '/large' ? large : kJson)))
  t.same(await api.getJson('/small'), kPayload)
  t.same(await api.getJson('/large'), JSON.parse(large.toString()))
})

import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { createHttpServices, HttpResponse, ResponseParseError, ResponseTooLargeError } from '../index'
import { mockResponse } from '../testing'
import { startServer } from './helpers/server'

const kLimit = 1024

async function setup (t: tap.Test, handler: Parameters<typeof startServer>[0], maxResponseSize = kLimit) {
  const server = await startServer(handler)
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url, maxResponseSize, connections: 1 } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api') }
}

/** Serves `size` bytes of 'a': with a content-length on /known, chunked (several writes) on /chunked. */
function sized (size: number): Parameters<typeof startServer>[0] {
  return (req, res) => {
    const body = Buffer.alloc(size, 'a')
    if (req.url?.startsWith('/known') === true) {
      res.writeHead(200, { 'content-length': String(size), 'content-type': 'application/json' })
      res.end(body)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    const half = Math.floor(size / 2)
    res.write(body.subarray(0, half))
    setTimeout(() => res.end(body.subarray(half)), 5)
  }
}

for (const read of ['text', 'json', 'arrayBuffer'] as const) {
  t.test(`${read}() of a body whose content-length exceeds maxResponseSize rejects with ResponseTooLargeError`, async (t) => {
    const { api } = await setup(t, sized(kLimit + 1))
    const res = await api.get('/known?token=abc')
    const err = await res[read]().then(() => undefined, (e: unknown) => e) as ResponseTooLargeError
    t.ok(err instanceof ResponseTooLargeError)
    t.match(err, { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', statusCode: 502, status: 200, limit: kLimit, service: 'api', method: 'GET', url: '/known?token=***' })
    t.match(err.message, /of 1025 bytes exceeds maxResponseSize 1024/)
    t.ok(res.body.destroyed, 'the body was destroyed, not buffered')
  })

  t.test(`${read}() of a chunked body that grows past maxResponseSize rejects with ResponseTooLargeError`, async (t) => {
    const { api } = await setup(t, sized(kLimit * 3))
    const res = await api.get('/chunked')
    t.equal(res.headers['content-length'], undefined, 'no content-length was sent')
    await t.rejects(res[read](), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', limit: kLimit, status: 200 })
    t.ok(res.body.destroyed)
  })
}

t.test('a body of exactly maxResponseSize is read, with or without content-length', async (t) => {
  const { api } = await setup(t, sized(kLimit))
  t.equal((await (await api.get('/known')).text()).length, kLimit)
  t.equal((await (await api.get('/chunked')).text()).length, kLimit)
})

t.test('the *Json helpers honour maxResponseSize too', async (t) => {
  const { api } = await setup(t, sized(kLimit + 1))
  await t.rejects(api.getJson('/known'), ResponseTooLargeError)
  await t.rejects(api.postJson('/chunked', {}), ResponseTooLargeError)
})

t.test('a compressed body passed through (decompress: false) is limited by its bytes on the wire, even with a content-length', async (t) => {
  const gz = gzipSync(Buffer.alloc(kLimit * 4, 'a'))
  const { api } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(gz.length) })
    res.end(gz)
  })
  t.ok(gz.length < kLimit, 'the gzip body itself fits the limit')
  // Not decoded: the bytes read are the gzip bytes, which fit (decoded bodies: test/transport/decompress.test.ts).
  const buf = Buffer.from(await (await api.get('/x', { decompress: false })).arrayBuffer())
  t.same(buf, gz)
})

t.test('the connection is usable again after a too-large body was refused', async (t) => {
  const { api, server } = await setup(t, (req, res) => {
    if (req.url === '/big') { res.writeHead(200, { 'content-length': String(kLimit * 2) }); res.end(Buffer.alloc(kLimit * 2)); return }
    res.end('small')
  })
  await t.rejects((await api.get('/big')).text(), ResponseTooLargeError)
  t.equal(await (await api.get('/small')).text(), 'small')
  t.equal(server.requests.length, 2)
})

t.test('dump() discards the body and frees the connection; destroy() closes it; both are safe twice', async (t) => {
  const { api, services } = await setup(t, sized(kLimit * 8), kLimit)
  const a = await api.get('/chunked')
  await a.dump()
  await a.dump()
  t.ok(a.body.readableEnded || a.body.destroyed)
  const b = await api.get('/known')
  b.destroy()
  b.destroy()
  t.ok(b.body.destroyed)
  const c = await api.get('/known', { throwHttpErrors: false })
  t.equal(c.status, 200, 'a new call works on the single connection of the pool')
  await c.dump()
  t.equal(services.stats().api.inFlight, 0)
})

t.test('the default maxResponseSize is 10 MiB', async (t) => {
  const server = await startServer(sized(10 * 1024 * 1024 + 1))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects((await services.client('api').get('/known')).arrayBuffer(), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', limit: 10 * 1024 * 1024 })
})

const kBom = Buffer.from([0xef, 0xbb, 0xbf])
/** Every byte value, four times over. */
const kBinary = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256))

/**
 * Serves `bytes` written apart in pieces: the first three (a BOM's) one by one, 20 ms apart, then 5 bytes at a time,
 * 2 ms apart, so that they reach the client as chunks of their own (a loaded machine may still join two). With a
 * content-length on /known, chunked otherwise; gzipped (in one piece) on /gzip.
 */
function inPieces (bytes: Buffer, type = 'application/json'): Parameters<typeof startServer>[0] {
  return async (req, res) => {
    if (req.url?.startsWith('/gzip') === true) {
      res.writeHead(200, { 'content-type': type, 'content-encoding': 'gzip' })
      res.end(gzipSync(bytes))
      return
    }
    const known = req.url?.startsWith('/known') === true
    res.writeHead(200, known ? { 'content-type': type, 'content-length': String(bytes.length) } : { 'content-type': type })
    const pieces = [bytes.subarray(0, 1), bytes.subarray(1, 2), bytes.subarray(2, 3)]
    for (let i = 3; i < bytes.length; i += 5) pieces.push(bytes.subarray(i, i + 5))
    for (const [i, piece] of pieces.entries()) {
      res.write(piece)
      await new Promise((resolve) => setTimeout(resolve, i < 3 ? 20 : 2))
    }
    res.end()
  }
}

async function chunksOf (body: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return chunks
}

t.test('a JSON body that starts with a BOM, split across chunks, reads the same through getJson, get() + json() and get() + text()', async (t) => {
  const value = { name: 'Zoë', city: '東京', n: [1, 2, 3] }
  const text = JSON.stringify(value)
  const bytes = Buffer.concat([kBom, Buffer.from(text)])
  const { api } = await setup(t, inPieces(bytes), 64 * 1024)
  // What the test is about: the BOM's bytes are split across chunks. TCP may join writes on a loaded machine: a few
  // tries at most, and the BOM must have come split in one of them.
  let first: Buffer[] = []
  for (let i = 0; i < 5 && (first.length === 0 || first[0].length >= kBom.length); i++) first = await chunksOf((await api.get('/chunked')).body)
  t.ok(first[0].length < kBom.length, `the BOM's bytes came split across chunks (first chunk: ${first[0].length} bytes)`)
  t.same(Buffer.concat(first), bytes, 'and whole')
  for (const path of ['/known', '/chunked', '/gzip']) {
    t.same(await api.getJson(path), value, `${path}: getJson`)
    t.same(await (await api.get(path)).json(), value, `${path}: get() + json()`)
    t.equal(await (await api.get(path)).text(), text, `${path}: get() + text() drops the BOM`)
    t.same(Buffer.from(await (await api.get(path)).arrayBuffer()), bytes, `${path}: get() + arrayBuffer() keeps it`)
  }
})

t.test('a binary body (every byte value) comes back byte for byte through arrayBuffer() and body', async (t) => {
  const { api } = await setup(t, inPieces(kBinary, 'application/octet-stream'), 64 * 1024)
  for (const path of ['/known', '/chunked', '/gzip']) {
    t.same(Buffer.from(await (await api.get(path)).arrayBuffer()), kBinary, `${path}: arrayBuffer()`)
    t.same(Buffer.concat(await chunksOf((await api.get(path)).body)), kBinary, `${path}: body`)
    t.equal(await (await api.get(path)).text(), new TextDecoder().decode(kBinary), `${path}: text() decodes as TextDecoder`)
  }
})

t.test('a response rebuilt from bytes (a cache, a mock) gives them back byte for byte and decodes them as one off the network', async (t) => {
  const meta = { service: 'api', method: 'GET', path: '/img', origin: 'http://127.0.0.1', maxResponseSize: 64 * 1024 }
  const rebuilt = (bytes: Buffer): HttpResponse => {
    const res = HttpResponse.unread(200, { 'content-type': 'application/octet-stream' }, meta)
    res.setBody(bytes)
    return res
  }
  const copy = await rebuilt(kBinary).arrayBuffer()
  t.same(Buffer.from(copy), kBinary, 'arrayBuffer()')
  new Uint8Array(copy)[0] = 0xff
  t.equal(kBinary[0], 0, 'arrayBuffer() is a copy')
  t.same(Buffer.concat(await chunksOf(rebuilt(kBinary).body)), kBinary, 'body')
  t.equal(await rebuilt(kBinary).text(), new TextDecoder().decode(kBinary), 'text()')
  t.same(await rebuilt(Buffer.concat([kBom, Buffer.from('{"a":1}')])).json(), { a: 1 }, 'json() drops a BOM')
  const read = rebuilt(kBinary)
  await read.arrayBuffer()
  t.equal(Buffer.concat(await chunksOf(read.body)).length, 0, 'once read, the body stream is empty')
  await t.rejects(read.text(), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' }, 'and it cannot be read again')

  t.same(Buffer.from(await mockResponse({ body: kBinary }).arrayBuffer()), kBinary, 'mockResponse from a Buffer')
  const ab = kBinary.buffer.slice(kBinary.byteOffset, kBinary.byteOffset + kBinary.byteLength)
  const fromAb = mockResponse({ body: ab })
  new Uint8Array(ab)[0] = 0xff
  t.same(Buffer.concat(await chunksOf(fromAb.body)), kBinary, 'mockResponse from an ArrayBuffer, copied')
  t.equal(await mockResponse({ body: Buffer.concat([kBom, Buffer.from('"x"')]) }).json(), 'x')
})

t.test('invalid UTF-8 becomes U+FFFD the same way through every read', async (t) => {
  const bytes = Buffer.from([0x22, 0x61, 0xff, 0x62, 0xe2, 0x82, 0x22])
  const { api } = await setup(t, inPieces(bytes), 64 * 1024)
  for (const path of ['/known', '/chunked', '/gzip']) {
    t.equal(await api.getJson(path), 'a\ufffdb\ufffd', `${path}: getJson`)
    t.equal(await (await api.get(path)).json(), 'a\ufffdb\ufffd', `${path}: get() + json()`)
    t.equal(await (await api.get(path)).text(), '"a\ufffdb\ufffd"', `${path}: get() + text()`)
  }
})

t.test('an empty body (or only a BOM) is undefined to every JSON read; a blank one is the same ResponseParseError', async (t) => {
  const { api } = await setup(t, (req, res) => {
    const body = req.url?.startsWith('/bom') === true ? kBom : req.url?.startsWith('/blank') === true ? Buffer.from(' \r\n') : Buffer.alloc(0)
    if (req.url?.endsWith('/known') === true) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) })
      res.end(body)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    if (body.length > 0) res.write(body)
    res.end()
  })
  for (const path of ['/empty/known', '/empty/chunked', '/bom/known', '/bom/chunked']) {
    t.equal(await api.getJson(path), undefined, `${path}: getJson`)
    t.equal(await (await api.get(path)).json(), undefined, `${path}: get() + json()`)
    t.equal(await (await api.get(path)).text(), '', `${path}: get() + text()`)
  }
  for (const path of ['/blank/known', '/blank/chunked']) {
    const errors = [
      await api.getJson(path).then(() => undefined, (e: unknown) => e),
      await (await api.get(path)).json().then(() => undefined, (e: unknown) => e)
    ] as ResponseParseError[]
    for (const err of errors) {
      t.ok(err instanceof ResponseParseError, path)
      t.match(err, { code: 'HTTP_SERVICES_ERR_RESPONSE_PARSE', status: 200, contentType: 'application/json', snippet: '', service: 'api', url: path })
    }
  }
})

t.test('a body stream that fails, ends early or was read already settles every read: never a hang', async (t) => {
  const failing = (err?: Error): Readable => new Readable({
    read () {
      this.push(Buffer.from('{"a":'))
      this.destroy(err)
    }
  })
  await t.rejects(mockResponse({ body: failing(new Error('boom')) }).json(), { code: /^HTTP_SERVICES_ERR_/, cause: { message: 'boom' } })
  await t.rejects(mockResponse({ body: failing() }).text(), { code: /^HTTP_SERVICES_ERR_/, cause: { code: 'ERR_STREAM_PREMATURE_CLOSE' } })
  const destroyed = mockResponse({ body: Readable.from([Buffer.from('x')]) })
  destroyed.destroy()
  await t.rejects(destroyed.text(), { code: /^HTTP_SERVICES_ERR_/ }, 'a destroyed body')
  const dumped = mockResponse({ text: 'gone' })
  await dumped.dump()
  t.equal(await dumped.text(), '', 'a dumped body is empty')
  t.equal(await mockResponse({ body: Readable.from(['a', 'é']) }).text(), 'aé', 'a stream of strings')
  t.same(Buffer.from(await mockResponse({ body: Readable.from([new Uint8Array([1, 2]), new Uint8Array([3])]) }).arrayBuffer()), Buffer.from([1, 2, 3]), 'a stream of Uint8Arrays')
  t.equal(await mockResponse({ body: Readable.from([new Uint8Array([0x68, 0x69])]) }).text(), 'hi', 'one Uint8Array chunk decodes as bytes')
})

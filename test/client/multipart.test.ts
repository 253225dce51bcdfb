import { createHash } from 'node:crypto'
import { openAsBlob } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createHttpServices, HttpStatusError, InvalidRequestError, type CommonServiceOptions } from '../../index'
import { startUploadChild, uploadApp, type Received } from '../helpers/upload-server'

async function setup (t: tap.Test, options: CommonServiceOptions = {}) {
  const { app, received } = await uploadApp()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const services = createHttpServices({
    services: { files: { baseUrl: `http://127.0.0.1:${port}`, retry: { attempts: 2, baseDelay: 1, maxDelay: 5 }, ...options } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await app.close() })
  return { api: services.client('files'), received }
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex')

t.test('a FormData of text fields, Blobs and Files arrives intact, with a correct boundary and content-length', async (t) => {
  const { api, received } = await setup(t)
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2, 3])
  const form = new FormData()
  form.append('title', 'Quarterly report')
  form.append('tags', 'a')
  form.append('tags', 'b')
  form.append('picture', new Blob([png], { type: 'image/png' }), 'pic.png')
  form.append('notes', new File(['hello, world'], 'notes.txt', { type: 'text/plain' }))
  form.append('raw', new Blob(['no name']))
  const got = await (await api.post('/upload', { multipart: form })).json<Received>()
  t.match(got.contentType, /^multipart\/form-data; boundary=-{4}HttpServicesFormBoundary[0-9a-f]{32}$/)
  t.ok(Number(got.contentLength) > 0, 'the length was known and sent')
  t.same(got.fields, [['title', 'Quarterly report'], ['tags', 'a'], ['tags', 'b']])
  t.same(got.files, [
    { field: 'picture', filename: 'pic.png', type: 'image/png', size: png.length, sha256: sha256(png), text: png.toString('utf8') },
    { field: 'notes', filename: 'notes.txt', type: 'text/plain', size: 12, sha256: sha256('hello, world'), text: 'hello, world' },
    { field: 'raw', filename: 'blob', type: 'application/octet-stream', size: 7, sha256: sha256('no name'), text: 'no name' }
  ])
  t.equal(received.length, 1)
})

t.test('an object of fields takes strings, numbers, booleans, arrays, bytes, Blobs, streams and named files', async (t) => {
  const { api } = await setup(t)
  const dir = await mkdtemp(join(tmpdir(), 'multipart-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const onDisk = join(dir, 'disk.csv')
  await writeFile(onDisk, 'a,b\n1,2\n')
  const got = await (await api.put('/upload', {
    multipart: {
      name: 'Ada',
      age: 36,
      admin: false,
      skipped: undefined,
      nothing: null,
      langs: ['en', 'fr'],
      bytes: Buffer.from('buffer bytes'),
      view: new Uint8Array(Buffer.from('xxview bytesxx')).subarray(2, 12),
      blob: new Blob(['{"a":1}'], { type: 'application/json' }),
      disk: await openAsBlob(onDisk, { type: 'text/csv' }),
      stream: Readable.from([Buffer.from('streamed '), 'text']),
      named: { value: 'plain text', filename: 'résumé "final".txt', contentType: 'text/markdown' }
    }
  })).json<Received>()
  t.equal(got.contentLength, null, 'a stream part: the length is unknown, the body is chunked')
  t.same(got.fields, [['name', 'Ada'], ['age', '36'], ['admin', 'false'], ['langs', 'en'], ['langs', 'fr']])
  t.same(got.files.map((f) => [f.field, f.filename, f.type, f.text]), [
    ['bytes', 'blob', 'application/octet-stream', 'buffer bytes'],
    ['view', 'blob', 'application/octet-stream', 'view bytes'],
    ['blob', 'blob', 'application/json', '{"a":1}'],
    ['disk', 'blob', 'text/csv', 'a,b\n1,2\n'],
    ['stream', 'blob', 'application/octet-stream', 'streamed text'],
    ['named', 'résumé %22final%22.txt', 'text/markdown', 'plain text']
  ])
})

t.test('multipart works on post, put and patch, and its content-type replaces the service default', async (t) => {
  const { api } = await setup(t, { headers: { 'content-type': 'application/json' } })
  for (const method of ['post', 'put', 'patch'] as const) {
    const got = await (await api[method]('/upload', { multipart: { field: method } })).json<Received>()
    t.match(got.contentType, /^multipart\/form-data; boundary=/, method)
    t.same(got.fields, [['field', method]])
  }
})

t.test('names and file names are escaped so they cannot break out of their quoted string', async (t) => {
  const { api } = await setup(t)
  const got = await (await api.post('/upload', {
    multipart: { 'a"b\r\nc': 'v', file: { value: Buffer.from('x'), filename: 'evil"\r\nContent-Type: text-html.txt' } }
  })).json<Received>()
  t.same(got.fields, [['a%22b%0D%0Ac', 'v']])
  t.same(got.files.map((f) => [f.filename, f.type]), [['evil%22%0D%0AContent-Type: text-html.txt', 'application/octet-stream']])
})

t.test('a file of more than 50 MB streamed from a Readable arrives intact without the client buffering it', async (t) => {
  // The app runs in a child process: the memory measured here is the client's alone.
  const server = await startUploadChild()
  const services = createHttpServices({ services: { files: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.stop() })
  const api = services.client('files')
  const chunkSize = 64 * 1024
  const chunks = 960 // 60 MiB
  const expected = createHash('sha256')
  let produced = 0
  // Chunks are views of a 4 MiB ring, so the generator itself allocates nothing while it runs: what memory grows
  // by is the library's doing. A slot is rewritten 64 chunks later; a chunk still queued by then would change the hash.
  const ring = Buffer.alloc(64 * chunkSize)
  async function * generate (): AsyncGenerator<Buffer> {
    for (let i = 0; i < chunks; i++) {
      const chunk = ring.subarray((i % 64) * chunkSize, (i % 64 + 1) * chunkSize).fill(i % 251)
      chunk.writeUInt32BE(i, 0)
      expected.update(chunk)
      produced++
      yield chunk
    }
  }
  global.gc?.()
  const base = process.memoryUsage()
  let peakRss = base.rss
  let peakHeap = base.heapUsed + base.external + base.arrayBuffers
  const timer = setInterval(() => {
    const m = process.memoryUsage()
    peakRss = Math.max(peakRss, m.rss)
    peakHeap = Math.max(peakHeap, m.heapUsed + m.external + m.arrayBuffers)
  }, 5)
  t.teardown(() => clearInterval(timer))
  const got = await (await api.post('/upload', {
    multipart: { kind: 'video', video: { value: Readable.from(generate()), filename: 'big.bin' } }
  })).json<Received>()
  clearInterval(timer)
  const total = chunkSize * chunks
  t.equal(produced, chunks)
  t.same(got.fields, [['kind', 'video']])
  t.same(got.files, [{ field: 'video', filename: 'big.bin', type: 'application/octet-stream', size: total, sha256: expected.digest('hex') }])
  const rss = peakRss - base.rss
  const heap = peakHeap - (base.heapUsed + base.external + base.arrayBuffers)
  t.ok(rss < 30 * 1024 * 1024, `resident memory grew by ${(rss / 1048576).toFixed(1)} MiB for a ${total / 1048576} MiB upload`)
  t.ok(heap < 30 * 1024 * 1024, `heap and buffers grew by ${(heap / 1048576).toFixed(1)} MiB`)
})

t.test('a form of Buffers and Blobs is replayable: with an Idempotency-Key a POST is retried after a 503', async (t) => {
  const { api, received } = await setup(t)
  const big = Buffer.alloc(200 * 1024, 7) // past the one-Buffer size: encoded afresh on each attempt
  const res = await api.post('/flaky', {
    headers: { 'idempotency-key': 'upload-1' },
    multipart: { note: 'again', a: 'a'.repeat(40_000), b: 'b'.repeat(40_000), big, blob: new Blob(['blob part']) }
  })
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  // Read the answer: an unread body is a call in flight, which close() would wait for (closeTimeout, 10 s).
  t.same((await res.json<Received>()).fields[0], ['note', 'again'], 'the answer is the retried upload')
  t.equal(received.length, 2, 'the server saw two uploads')
  for (const got of received) {
    t.same(got.fields, [['note', 'again'], ['a', 'a'.repeat(40_000)], ['b', 'b'.repeat(40_000)]])
    t.same(got.files.map((f) => [f.field, f.size, f.sha256]), [['big', big.length, sha256(big)], ['blob', 9, sha256('blob part')]])
    t.equal(Number(got.contentLength) > big.length, true, 'each attempt sent its content-length')
  }
})

t.test('a form with a stream part is sent once: the 503 is not retried, even with an Idempotency-Key', async (t) => {
  const { api, received } = await setup(t)
  const err = await api.post('/flaky', {
    headers: { 'idempotency-key': 'upload-2' },
    multipart: { note: 'once', file: Readable.from([Buffer.from('only once')]) }
  }).catch((e: unknown) => e) as HttpStatusError
  t.type(err, HttpStatusError)
  t.equal(err.status, 503)
  t.equal(err.attempts, 1)
  t.equal(received.length, 1, 'the server saw one upload')
  t.same(received[0].files.map((f) => f.text), ['only once'])
})

t.test('a stream part that fails mid-upload fails the call, and a stream of objects is refused', async (t) => {
  const { api } = await setup(t)
  let reads = 0
  const failing = new Readable({
    read () {
      if (reads++ === 0) this.push(Buffer.from('start'))
      else setTimeout(() => this.destroy(new Error('disk gone')), 5)
    }
  })
  await t.rejects(api.post('/upload', { multipart: { file: failing } }), { message: /disk gone/ })
  await t.rejects(api.post('/upload', { multipart: { file: Readable.from([{ not: 'bytes' }]) } }),
    { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /multipart field "file": the stream gave a object, not bytes/ })
})

t.test('bad multipart input is refused before any connection', async (t) => {
  const { api, received } = await setup(t)
  const cases: Array<[unknown, RegExp]> = [
    ['a string', /multipart must be a FormData or an object of fields/],
    [[['a', 'b']], /multipart must be a FormData or an object of fields/],
    [{ a: {} }, /multipart field "a" must be a string, number, boolean, Buffer/],
    [{ a: [1, Symbol('x')] }, /multipart field "a" must be/],
    [{ a: { value: 'x', filename: 1 } }, /multipart field "a": filename must be a string/],
    [{ a: { value: 'x', contentType: 'text/plain\r\nX-Evil: 1' } }, /contentType holds a CR, LF or NUL/]
  ]
  for (const [multipart, message] of cases) {
    await t.rejects(api.post('/upload', { multipart: multipart as FormData }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message })
  }
  await t.rejects(api.post('/upload', { json: {}, multipart: { a: 'b' } }), InvalidRequestError)
  t.equal(received.length, 0)
})

t.test('the streams of a form that is never sent, or not to its end, are destroyed (no file descriptor left open)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hs-multipart-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'data.bin')
  await writeFile(file, Buffer.alloc(256 * 1024, 1))
  const { createReadStream } = await import('node:fs')
  const closed = async (s: Readable): Promise<void> => {
    if (!s.destroyed) await new Promise((resolve) => s.once('close', resolve))
  }

  // Nothing listens: the connection is refused before a byte of the form is read.
  const down = createHttpServices({ services: { files: { baseUrl: 'http://127.0.0.1:1', retry: false } } })
  await down.open()
  t.teardown(async () => { await down.close() })
  const a = createReadStream(file)
  const b = createReadStream(file)
  await t.rejects(down.client('files').post('/upload', { multipart: { a, b } }), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  await Promise.all([closed(a), closed(b)])
  t.ok(a.destroyed && b.destroyed, 'a refused connection destroys every stream part')

  // A later field is invalid: the form is refused before any connection, and the stream before it is closed.
  const { api } = await setup(t)
  const c = createReadStream(file)
  await t.rejects(api.post('/upload', { multipart: { c, bad: { nope: true } as never } }), InvalidRequestError)
  await closed(c)
  t.ok(c.destroyed, 'a refused form destroys its streams')

  // Bad input elsewhere in the call (a header) refuses the call: its stream body is closed too.
  const d = createReadStream(file)
  await t.rejects(api.post('/upload', { body: d, headers: { 'x-bad': 'a\r\nb' } }), InvalidRequestError)
  await closed(d)
  t.ok(d.destroyed, 'a refused call destroys its stream body')
})

t.test('a stream body of a call that fails before reaching the upstream (open breaker) is destroyed', async (t) => {
  const services = createHttpServices({
    services: { files: { baseUrl: 'http://127.0.0.1:1', retry: false, breaker: { minimumRequests: 1, resetAfter: 60_000 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close() })
  const api = services.client('files')
  await t.rejects(api.get('/'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  const body = Readable.from([Buffer.from('never sent')])
  await t.rejects(api.post('/upload', { body }), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  t.ok(body.destroyed, 'the open breaker\'s refusal destroyed the body')
})

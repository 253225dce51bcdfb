import { gzipSync } from 'node:zlib'
import t from 'tap'
import { createHttpServices, ResponseTooLargeError } from '../index'
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

import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import t from 'tap'
import httpServices, { TimeoutError, type HttpClient, type HttpResponse } from '../index'
import { capturePino } from './helpers/pino-lines'
import { startServer } from './helpers/server'
import { type LogLine, kBig, kBound, setup, within } from './helpers/unread-body'

const verbs: Array<[string, (api: HttpClient, path: string) => Promise<HttpResponse>]> = [
  ['get()', async (api, path) => await api.get(path)],
  ['stream()', async (api, path) => await api.stream('GET', path)],
  ['request()', async (api, path) => await api.request('GET', path)]
]

for (const [name, call] of verbs) {
  t.test(`an unread 1 MB body from ${name} is discarded after timeout.body and frees the only connection`, async (t) => {
    const { api, warnings } = await setup(t, { body: 300 })
    const first = await call(api, '/big?token=abc')
    const started = performance.now()
    t.same(await within(api.getJson('/small'), kBound, 'the second call on the only connection'), { ok: true })
    t.ok(performance.now() - started < kBound)

    t.match(warnings(), [{ service: 'api', method: 'GET', path: '/big?token=***' }])
    t.ok((warnings()[0]?.unreadFor ?? 0) >= 300, 'unreadFor says how long it sat unread')
    t.notMatch(warnings()[0].msg, /abc/, 'the query value stays out of the log')

    for (const read of ['text', 'json', 'arrayBuffer'] as const) {
      const err = await within(first[read]().then(() => undefined, (e: unknown) => e), kBound, `${read}() of the discarded body`)
      t.ok(err instanceof TimeoutError, `${read}() rejects with TimeoutError`)
      t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'body', timeout: 300, service: 'api', method: 'GET', url: '/big?token=***' })
      t.match((err as Error).message, /GET api \/big\?token=\*\*\*: the response body was discarded: it was left unread for 300 ms/)
    }
    const streamed = within((async () => { for await (const chunk of first.body) void chunk })(), kBound, 'reading res.body')
    await t.rejects(streamed, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'body' })
    await within(first.dump(), kBound, 'dump() of the discarded body')
  })
}

t.test("a call's own timeout.body sets when its unread body is discarded", async (t) => {
  const { api, warnings } = await setup(t, { body: 30000 })
  const first = await api.get('/big', { timeout: { body: 200 } })
  t.same(await within(api.getJson('/small'), kBound, 'the second call'), { ok: true })
  t.match(warnings(), [{ method: 'GET', path: '/big' }])
  t.match(warnings()[0]?.msg, /left unread for 200 ms/)
  await t.rejects(first.text(), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'body', timeout: 200 })
})

t.test('a body being read slowly (one chunk every 100 ms) is not discarded', async (t) => {
  const { api, warnings } = await setup(t, { body: 300 })
  const res = await api.get('/big')
  const started = performance.now()
  const read = (async () => {
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      await sleep(100)
    }
    return size
  })()
  t.equal(await within(read, 20000, 'the slow read'), kBig, 'every byte was read')
  t.ok(performance.now() - started > 600, 'the read went on well past timeout.body')
  t.same(warnings(), [])
})

t.test('a body read or dumped in time, a small body already received, and a response without a body are left alone', async (t) => {
  const { api, warnings } = await setup(t, { body: 100 })
  const read = await api.get('/big')
  t.equal((await read.arrayBuffer()).byteLength, kBig)
  const dumped = await api.get('/big')
  await dumped.dump()
  const head = await api.head('/small')
  // Came whole with its headers: its connection is free, nothing to discard.
  const small = await api.get('/small')
  // Compressed, and decoded only when read: its raw body came whole too.
  const zipped = await api.get('/small-gzip')
  await sleep(400)
  t.same(warnings(), [])
  t.equal(await head.text(), '')
  t.same(await small.json(), { ok: true })
  t.same(await zipped.json(), { ok: true, zipped: true }, 'a small compressed body read late is still there')
})

t.test("a route's forgotten body is reported through the inbound request's logger, with its reqId", async (t) => {
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(kBig) })
    res.end(Buffer.alloc(kBig))
  })
  const { logger, lines } = capturePino<LogLine>()
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger })
  await app.register(httpServices, { closeTimeout: 500, services: { api: { baseUrl: server.url, connections: 1, retry: false, timeout: { body: 300 } } } })
  app.get('/forget', async (request) => {
    const res = await request.httpClient('api').get('/big')
    return { status: res.status }
  })
  t.teardown(async () => { await app.close(); await server.close() })
  const reply = await app.inject('/forget')
  t.same(reply.json(), { status: 200 })
  const end = performance.now() + kBound
  while (!lines.some((l) => /unread/.test(l.msg)) && performance.now() < end) await sleep(20)
  const line = lines.find((l) => /unread/.test(l.msg))
  t.match(line, { level: 40, service: 'api', method: 'GET', path: '/big' })
  t.ok(typeof line?.reqId === 'string' && line.reqId.length > 0, 'the line carries the request id')
})

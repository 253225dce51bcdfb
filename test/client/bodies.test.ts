import { Readable } from 'node:stream'
import t from 'tap'
import { createHttpServices, type HttpClient } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'

async function echo (t: tap.Test): Promise<{ server: TestServer, api: HttpClient }> {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, {
    method: seen.method,
    type: seen.headers['content-type'] ?? null,
    length: seen.headers['content-length'] ?? null,
    chunked: seen.headers['transfer-encoding'] ?? null,
    body: seen.body
  }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api') }
}

t.test('json is sent as application/json with a content-length', async (t) => {
  const { api } = await echo(t)
  const got = await (await api.post('/x', { json: { a: 1, b: ['é', null] } })).json()
  t.same(got, { method: 'POST', type: 'application/json', length: String(Buffer.byteLength('{"a":1,"b":["é",null]}')), chunked: null, body: '{"a":1,"b":["é",null]}' })
})

t.test('json may be a falsy value (0, false, null, empty string) and is still sent', async (t) => {
  const { api } = await echo(t)
  for (const value of [0, false, null, '']) {
    const got = await (await api.put('/x', { json: value })).json<{ body: string, type: string }>()
    t.equal(got.body, JSON.stringify(value), `${JSON.stringify(value)} sent`)
    t.equal(got.type, 'application/json')
  }
})

t.test('form is sent url-encoded: arrays repeat the key, undefined and null are dropped', async (t) => {
  const { api } = await echo(t)
  const got = await (await api.post('/x', { form: { name: 'a b&c', tags: ['x', 'y'], gone: undefined, nil: null, n: 3, ok: true } })).json()
  t.same(got, { method: 'POST', type: 'application/x-www-form-urlencoded', length: '40', chunked: null, body: 'name=a%20b%26c&tags=x&tags=y&n=3&ok=true' }, 'form body')
})

t.test('form also accepts URLSearchParams', async (t) => {
  const { api } = await echo(t)
  const got = await (await api.patch('/x', { form: new URLSearchParams([['q', 'a+b'], ['q', 'c']]) })).json<{ body: string, type: string }>()
  t.equal(got.body, 'q=a%2Bb&q=c')
  t.equal(got.type, 'application/x-www-form-urlencoded')
})

t.test('a string body is sent as is, with the caller\'s content-type', async (t) => {
  const { api } = await echo(t)
  const got = await (await api.post('/x', { body: '<a>1</a>', headers: { 'Content-Type': 'application/xml' } })).json()
  t.same(got, { method: 'POST', type: 'application/xml', length: '8', chunked: null, body: '<a>1</a>' })
})

t.test('a caller\'s content-type wins over the json default', async (t) => {
  const { api } = await echo(t)
  const got = await (await api.post('/x', { json: { a: 1 }, headers: { 'content-type': 'application/merge-patch+json' } })).json<{ type: string }>()
  t.equal(got.type, 'application/merge-patch+json')
})

t.test('a Buffer and a Uint8Array are sent byte for byte', async (t) => {
  const { api } = await echo(t)
  const buf = Buffer.from('binary\u0000data')
  const a = await (await api.put('/x', { body: buf })).json<{ body: string, length: string }>()
  t.equal(a.body, 'binary\u0000data')
  t.equal(a.length, String(buf.length))
  const b = await (await api.put('/x', { body: new Uint8Array([104, 105]) })).json<{ body: string }>()
  t.equal(b.body, 'hi')
})

t.test('a stream body is sent chunked and arrives whole', async (t) => {
  const { api } = await echo(t)
  const parts = ['one,', 'two,', 'three']
  const got = await (await api.post('/x', { body: Readable.from(parts.map((p) => Buffer.from(p))) })).json()
  t.same(got, { method: 'POST', type: null, length: null, chunked: 'chunked', body: 'one,two,three' })
})

t.test('json, form and body are mutually exclusive, and a bad body type is refused, before any connection', async (t) => {
  const { api, server } = await echo(t)
  await t.rejects(api.post('/x', { json: 1, body: 'x' }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /only one of json, form, body and multipart/ })
  await t.rejects(api.post('/x', { json: 1, form: { a: 1 } }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
  await t.rejects(api.post('/x', { body: { a: 1 } as unknown as string }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /body must be/ })
  await t.rejects(api.post('/x', { json: { big: 10n } }), TypeError, 'an unserialisable json value rejects (no sync throw)')
  t.equal(server.requests.length, 0, 'the server saw nothing')
})

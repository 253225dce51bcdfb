import t from 'tap'
import { createHttpServices, ResponseParseError } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test, handler: Parameters<typeof startServer>[0]) {
  const server = await startServer(handler)
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api') }
}

t.test('the *Json helpers send their body as JSON and parse the answer', async (t) => {
  const { api, server } = await setup(t, (_req, res, seen) => sendJson(res, 200, {
    method: seen.method, type: seen.headers['content-type'] ?? null, got: seen.body === '' ? null : JSON.parse(seen.body)
  }))
  t.same(await api.getJson('/x'), { method: 'GET', type: null, got: null })
  t.same(await api.postJson('/x', { a: 1 }), { method: 'POST', type: 'application/json', got: { a: 1 } })
  t.same(await api.putJson('/x', [1, 2]), { method: 'PUT', type: 'application/json', got: [1, 2] })
  t.same(await api.patchJson('/x', { op: 'x' }), { method: 'PATCH', type: 'application/json', got: { op: 'x' } })
  t.same(await api.deleteJson('/x'), { method: 'DELETE', type: null, got: null })
  t.same(await api.postJson('/x'), { method: 'POST', type: null, got: null }, 'no body argument sends no body')
  t.same(await api.postJson('/x', null), { method: 'POST', type: 'application/json', got: null }, 'null is a JSON body')
  t.same(await api.getJson('/x', { query: { a: '1' }, headers: { 'x-a': 'b' } }), { method: 'GET', type: null, got: null })
  t.equal(server.requests.at(-1)?.url, '/x?a=1', 'options still apply')
  t.equal(server.requests.at(-1)?.headers['x-a'], 'b')
})

t.test('a 204, an empty 200 and a HEAD give undefined from json()', async (t) => {
  const { api } = await setup(t, (req, res) => {
    if (req.url === '/204') { res.writeHead(204); res.end(); return }
    if (req.url === '/empty') { res.writeHead(200, { 'content-type': 'application/json', 'content-length': '0' }); res.end(); return }
    if (req.url === '/chunked-empty') { res.writeHead(200, { 'content-type': 'application/json' }); res.end(); return }
    sendJson(res, 200, { a: 1 })
  })
  t.equal(await api.deleteJson('/204'), undefined)
  t.equal(await api.getJson('/204'), undefined)
  t.equal(await api.getJson('/empty'), undefined)
  t.equal(await api.getJson('/chunked-empty'), undefined)
  t.equal(await (await api.head('/full')).json(), undefined)
})

t.test('a body that is not JSON rejects with ResponseParseError: status, content-type and the first 200 characters', async (t) => {
  const html = '<html><body>' + 'x'.repeat(500) + '</body></html>'
  const { api } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  })
  const err = await api.getJson('/page?api_key=secret').then(() => undefined, (e: unknown) => e) as ResponseParseError
  t.ok(err instanceof ResponseParseError, 'a ResponseParseError')
  t.equal(err.code, 'HTTP_SERVICES_ERR_RESPONSE_PARSE')
  t.equal(err.status, 200)
  t.equal(err.statusCode, 502)
  t.equal(err.contentType, 'text/html; charset=utf-8')
  t.equal(err.snippet, html.slice(0, 200))
  t.equal(err.snippet.length, 200)
  t.equal(err.service, 'api')
  t.equal(err.method, 'GET')
  t.equal(err.url, '/page?api_key=***', 'query values redacted')
  t.notMatch(err.message, /secret/)
  t.match(err.message, /response 200 is not valid JSON$/)
  t.ok(err.cause instanceof SyntaxError, 'cause is the JSON SyntaxError')
})

t.test('a JSON error status parsed by a *Json helper rejects with HttpStatusError, not a parse error', async (t) => {
  const { api } = await setup(t, (_req, res) => { res.writeHead(503, { 'content-type': 'text/plain' }); res.end('down for maintenance') })
  await t.rejects(api.getJson('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, detail: 'down for maintenance' })
})

t.test('text() and arrayBuffer() read the whole body', async (t) => {
  const { api } = await setup(t, (req, res) => {
    if (req.url === '/chunked') { res.write('ab'); setTimeout(() => res.end('cd'), 5); return }
    res.end('héllo')
  })
  t.equal(await (await api.get('/x')).text(), 'héllo')
  t.equal(await (await api.get('/chunked')).text(), 'abcd')
  t.same(Buffer.from(await (await api.get('/x')).arrayBuffer()), Buffer.from('héllo'))
  t.same(Buffer.from(await (await api.get('/chunked')).arrayBuffer()), Buffer.from('abcd'))
})

t.test('getJson and get() + json() give the same ResponseParseError for the same body, chunked or with a length', async (t) => {
  const page = '\ufeff<html>' + 'é'.repeat(300) + '</html>'
  const { api } = await setup(t, (req, res) => {
    const bytes = Buffer.from(page)
    if (req.url === '/known') {
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': String(bytes.length) })
      res.end(bytes)
      return
    }
    res.writeHead(200, { 'content-type': 'text/html' })
    // Cut through a BOM and a 2-byte character.
    res.write(bytes.subarray(0, 2))
    setTimeout(() => res.end(bytes.subarray(2)), 5)
  })
  const fields = (e: unknown): unknown => {
    const err = e as ResponseParseError
    return { ok: err instanceof ResponseParseError, message: err.message, status: err.status, contentType: err.contentType, snippet: err.snippet }
  }
  const expected = {
    ok: true,
    message: 'GET api /x: response 200 is not valid JSON',
    status: 200,
    contentType: 'text/html',
    snippet: ('<html>' + 'é'.repeat(300)).slice(0, 200)
  }
  for (const path of ['/known', '/chunked']) {
    const viaHelper = await api.getJson(path).then(() => undefined, fields)
    const viaRead = await (await api.get(path)).json().then(() => undefined, fields)
    t.same(viaHelper, { ...expected, message: expected.message.replace('/x', path) }, `${path}: getJson`)
    t.same(viaRead, viaHelper, `${path}: get() + json()`)
  }
})

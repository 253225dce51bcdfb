import { Readable } from 'node:stream'
import t from 'tap'
import { HttpResponse, HttpStatusError, createHttpServices } from '../../index'
import { mockResponse, mockStatusError } from '../../testing'
import { sendJson, startServer } from '../helpers/server'

t.test('mockResponse builds the HttpResponse the client returns, from JSON, text or bytes', async (t) => {
  const json = mockResponse({ status: 201, json: { id: 7 }, headers: { 'X-Trace': 'abc', 'Retry-After': 3 } })
  t.ok(json instanceof HttpResponse)
  t.equal(json.status, 201)
  t.equal(json.ok, true)
  t.equal(json.headers['content-type'], 'application/json')
  t.equal(json.headers['x-trace'], 'abc', 'header names are lower-cased')
  t.equal(json.headers['retry-after'], '3', 'numbers become text')
  t.same(await json.json(), { id: 7 })

  const text = mockResponse({ text: 'hello' })
  t.equal(text.status, 200, 'status defaults to 200')
  t.match(text.headers['content-type'], /^text\/plain/)
  t.equal(await text.text(), 'hello')

  const bytes = mockResponse({ body: Buffer.from([9, 8]), headers: { 'content-type': 'application/octet-stream' } })
  t.same([...Buffer.from(await bytes.arrayBuffer())], [9, 8])

  const streamed = mockResponse({ body: Readable.from([Buffer.from('a'), Buffer.from('b')]) })
  const chunks: Buffer[] = []
  for await (const c of streamed.body) chunks.push(c as Buffer)
  t.equal(Buffer.concat(chunks).toString(), 'ab', 'the body stream can be read directly')

  const empty = mockResponse({ status: 204 })
  t.equal(await empty.json(), undefined)
  t.equal(mockResponse({ attempts: 3 }).attempts, 3)
})

t.test('the body size limit applies as to a real response', async (t) => {
  const res = mockResponse({ text: 'x'.repeat(100), maxResponseSize: 10, service: 'users', path: '/big' })
  await t.rejects(res.text(), { code: 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', service: 'users' })
})

t.test('cookies are parsed the same from a mock response and from a real one', async (t) => {
  const lines = ['session=abc; Path=/; HttpOnly; SameSite=Lax', 'theme=dark; Max-Age=60']
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'set-cookie': lines, 'content-length': '0' })
    res.end()
  })
  const services = createHttpServices({ services: { web: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const real = await services.client('web').get('/')
  await real.dump()

  const fromAttributes = mockResponse({
    cookies: [{ name: 'session', value: 'abc', path: '/', httpOnly: true, sameSite: 'Lax' }, { name: 'theme', value: 'dark', maxAge: 60 }]
  })
  const fromLines = mockResponse({ headers: { 'set-cookie': lines } })
  t.same(real.cookies, [
    { name: 'session', value: 'abc', path: '/', httpOnly: true, sameSite: 'Lax' },
    { name: 'theme', value: 'dark', maxAge: 60 }
  ])
  t.same(fromAttributes.cookies, real.cookies, 'cookies given as objects')
  t.same(fromLines.cookies, real.cookies, 'cookies given as set-cookie lines')
  t.same(mockResponse({ cookies: { a: '1', b: '2' } }).cookies, [{ name: 'a', value: '1' }, { name: 'b', value: '2' }], 'a name: value record')
  t.same(mockResponse({ headers: { 'set-cookie': 'x=1' }, cookies: { y: '2' } }).headers['set-cookie'], ['x=1', 'y=2'], 'added to the given set-cookie')
  t.same(mockResponse({}).cookies, [], 'no set-cookie, no cookies')
})

t.test('mockStatusError gives the very HttpStatusError the client throws for the same answer', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 404, { error: 'no such user' }, { 'x-req': '1' }))
  const services = createHttpServices({ defaults: { retry: false }, services: { users: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const real = await services.client('users').get('/users/7', { query: { token: 's3cret' } }).then(() => undefined, (e: unknown) => e) as HttpStatusError

  const mocked = await mockStatusError({
    status: 404, json: { error: 'no such user' }, headers: { 'x-req': '1' }, service: 'users', method: 'GET', path: '/users/7?token=s3cret'
  })
  t.ok(mocked instanceof HttpStatusError)
  for (const key of ['message', 'code', 'statusCode', 'status', 'detail', 'service', 'method', 'url', 'attempts'] as const) {
    t.same(mocked[key], real[key], key)
  }
  t.same(mocked.body, real.body, 'parsed body')
  t.equal(mocked.responseHeaders['x-req'], '1')
  t.equal(mocked.url, '/users/7?token=***', 'the query is redacted')

  const passthrough = await mockStatusError(mockResponse({ status: 429, text: 'slow down' }), { passthroughStatus: true })
  t.equal(passthrough.statusCode, 429)
  t.equal(passthrough.detail, 'slow down')
  await t.rejects(mockStatusError({ status: 200 }), TypeError)
})

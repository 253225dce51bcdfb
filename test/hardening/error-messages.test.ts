import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { createServer as createHttpsServer } from 'node:https'
import Fastify from 'fastify'
import t from 'tap'
import httpServices, {
  ConnectionError, createHttpServices, DecompressError, HttpStatusError, ResponseParseError, TlsError, type HttpClient
} from '../../index'
import { testCerts } from '../helpers/certs'
import { closedPort, startServer } from '../helpers/server'

// Issue 16.5: an error's message is sent to end clients by Fastify's error handler, so it holds no text the upstream
// chose (error body, content-type, content-encoding, certificate names) and no socket address; that text lives in
// properties, capped and without control characters, and `JSON.stringify(err)` shows no raw upstream bytes.

// C0 and C1 controls, DEL, and bidi overrides: what must never reach an error's text fields.
const kControl = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/

async function services (t: tap.Test, baseUrl: string, extra: Record<string, unknown> = {}): Promise<HttpClient> {
  // A total timeout bounds every call: a test that would hang fails with a TimeoutError instead.
  const registry = createHttpServices({ defaults: { retry: false, timeout: 5000 }, services: { api: { baseUrl, ...extra } } })
  await registry.open()
  t.teardown(async () => await registry.close())
  return registry.client('api')
}

async function failure<E> (promise: Promise<unknown>): Promise<E> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as E)
}

/** A raw TCP server on 127.0.0.1 that answers each connection with `answer`; every socket is destroyed on teardown. */
async function rawServer (t: tap.Test, answer: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createNetServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', () => answer(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as AddressInfo).port
}

const hostile = 'line one\r\nX-Injected: 1\u0000 \u001b[31mred\u001b[0m \u202eevil ' + 'x'.repeat(1000)

t.test('an error body with CR/LF, NUL, ANSI escapes and bidi overrides stays out of the message; detail is cleaned and capped', async (t) => {
  const server = await startServer((_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json', 'set-cookie': 'session=abc' })
    res.end(JSON.stringify({ message: hostile }))
  })
  t.teardown(async () => await server.close())
  const api = await services(t, server.url)
  const err = await failure<HttpStatusError>(api.getJson('/x?token=abc'))
  t.ok(err instanceof HttpStatusError)
  t.equal(err.message, 'GET api /x?token=***: downstream answered 500')
  t.ok(err.detail !== undefined && err.detail.startsWith('line one X-Injected: 1 red evil x'), `detail is cleaned: ${JSON.stringify(err.detail?.slice(0, 40))}`)
  t.ok((err.detail ?? '').length <= 200, 'detail is capped at 200 characters')
  t.notMatch(err.detail, kControl, 'no control character in detail')
  t.match(err.body, { message: hostile }, 'the parsed body is still there for code that wants it')
  const json = JSON.stringify(err)
  t.ok(json.length < 800, `JSON.stringify(err) stays small (${json.length} characters)`)
  t.notMatch(json, /\\u001b|\\r|\\u0000|session=abc|x{201}/, 'and shows neither raw bytes, the body nor response headers')
})

t.test('Fastify sends the end client none of the upstream\'s text', async (t) => {
  const server = await startServer((_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' })
    res.end(hostile)
  })
  t.teardown(async () => await server.close())
  const app = Fastify()
  await app.register(httpServices, { defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  app.get('/', async (request) => await request.httpClient('api').getJson('/x'))
  t.teardown(async () => await app.close())
  const reply = await app.inject('/')
  t.equal(reply.statusCode, 502)
  t.same(reply.json(), { statusCode: 502, code: 'HTTP_SERVICES_ERR_STATUS', error: 'Bad Gateway', message: 'GET api /x: downstream answered 503' })
})

t.test('a long Content-Type with control characters is capped and cleaned in contentType, and out of the message', async (t) => {
  // node:http lets latin1 bytes through in header values: 0x9b is the one-byte CSI of C1.
  const type = 'text/html; x=\u009b31m' + 'a'.repeat(8000)
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': type })
    res.end('<html>\u001b[2J' + 'y'.repeat(500) + '</html>')
  })
  t.teardown(async () => await server.close())
  const api = await services(t, server.url)
  const err = await failure<ResponseParseError>(api.getJson('/page'))
  t.ok(err instanceof ResponseParseError)
  t.equal(err.message, 'GET api /page: response 200 is not valid JSON')
  t.ok(typeof err.contentType === 'string' && err.contentType.startsWith('text/html; x='), `contentType kept: ${err.contentType?.slice(0, 20)}`)
  t.ok((err.contentType ?? '').length <= 100, `contentType capped at 100 (${err.contentType?.length})`)
  t.notMatch(err.contentType, kControl)
  t.ok(err.snippet.length <= 200 && err.snippet.startsWith('<html>y'), 'the snippet is capped and cleaned')
  t.notMatch(err.snippet, kControl)
  t.ok(JSON.stringify(err).length < 1000, 'JSON.stringify(err) stays small')
})

t.test('a padded Content-Encoding stays out of the message and is capped in encoding', async (t) => {
  const encoding = 'identity, '.repeat(800) + 'gzip'
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': encoding })
    res.end('not gzip at all')
  })
  t.teardown(async () => await server.close())
  const api = await services(t, server.url)
  const err = await failure<DecompressError>(api.getJson('/x'))
  t.ok(err instanceof DecompressError, `a DecompressError (got ${String(err)})`)
  t.match(err.message, /^GET api \/x: cannot decode the gzip response body of status 200: /)
  t.notMatch(err.message, /identity/)
  t.ok(err.message.length < 200, `a short message (${err.message.length})`)
  t.ok(err.encoding.length <= 100 && err.encoding.startsWith('identity, identity'), `encoding capped (${err.encoding.length})`)
})

t.test('a refused connection names no address in the message, nor in JSON.stringify(err); the cause keeps it', async (t) => {
  const port = await closedPort()
  const api = await services(t, `http://127.0.0.1:${port}`)
  const err = await failure<ConnectionError>(api.get('/x'))
  t.ok(err instanceof ConnectionError)
  t.equal(err.message, 'GET api /x: connect ECONNREFUSED')
  t.equal(err.errno, 'ECONNREFUSED')
  t.notMatch(JSON.stringify(err), new RegExp(`127\\.0\\.0\\.1|${port}`))
  t.match((err.cause as Error).message, String(port), 'err.cause still has the details, for logs')
})

t.test('a response undici cannot parse, or a socket closed mid-body, shows neither raw bytes nor socket addresses', async (t) => {
  const malformed = await rawServer(t, (socket) => {
    socket.end('HTTP/1.1 200 OK\r\nx-leak: \u0001raw-secret-bytes\r\ncontent-length: 2\r\n\r\n{}')
  })
  const bad = await failure<ConnectionError>((await services(t, `http://127.0.0.1:${malformed}`)).getJson('/x'))
  t.ok(bad instanceof ConnectionError, `a ConnectionError (got ${String(bad)})`)
  t.notMatch(bad.message, /raw-secret-bytes/)
  t.notMatch(JSON.stringify(bad), new RegExp(`raw-secret-bytes|${malformed}`))

  const cut = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":')
    setImmediate(() => socket.destroy())
  })
  const closed = await failure<ConnectionError>((await services(t, `http://127.0.0.1:${cut}`)).getJson('/x'))
  t.ok(closed instanceof ConnectionError, `a ConnectionError (got ${String(closed)})`)
  t.notMatch(closed.message, /127\.0\.0\.1/)
  t.notMatch(JSON.stringify(closed), new RegExp(`127\\.0\\.0\\.1|${cut}|remotePort|localPort`), 'no socket address through cause')
})

t.test('a certificate for other names gives a TlsError whose message quotes nothing of the certificate', async (t) => {
  const certs = testCerts()
  const server = await startServer((_req, res) => { res.end('{}') },
    createHttpsServer({ key: certs.serverKey, cert: certs.serverCert }))
  t.teardown(async () => await server.close())
  const api = await services(t, `https://127.0.0.1:${server.port}`, { tls: { ca: certs.ca, servername: 'billing.internal' } })
  const err = await failure<TlsError>(api.get('/'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.equal(err.message, 'GET api /: TLS failure ERR_TLS_CERT_ALTNAME_INVALID')
  t.notMatch(JSON.stringify(err), /altnames|localhost/)
})

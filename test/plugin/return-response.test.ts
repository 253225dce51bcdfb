import t, { type Test } from 'tap'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import Fastify from 'fastify'
import httpServices, { HttpResponse, type ServiceOptions } from '../../index'
import { mockResponse } from '../../testing'
import { startServer, type Handler } from '../helpers/server'

/** Fails with `what` when `promise` has not settled within `ms`: a broken send must not hang the test. */
async function within<T> (promise: Promise<T>, what: string, ms = 10000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

async function setup (t: Test, handler: Handler, options: Partial<ServiceOptions> = {}) {
  const upstream = await startServer(handler)
  const app = Fastify()
  await app.register(httpServices, {
    defaults: { retry: false },
    services: { up: { baseUrl: upstream.url, throwHttpErrors: false, ...options } }
  })
  t.teardown(async () => { await app.close(); await upstream.close() })
  return { app, upstream }
}

t.test('a returned response sends the downstream status, headers and body, without the hop-by-hop headers', async (t) => {
  const { app } = await setup(t, (req, res) => {
    const status = req.url === '/missing' ? 404 : 201
    const body = status === 404 ? 'no such thing' : 'made it'
    res.writeHead(status, {
      'content-length': Buffer.byteLength(body),
      'content-type': 'text/plain; charset=utf-8',
      'x-custom': 'kept',
      'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
      'keep-alive': 'timeout=5',
      'proxy-authenticate': 'Basic realm="up"',
      upgrade: 'h2c',
      connection: 'keep-alive, x-hop',
      'x-hop': 'dropped: named by connection'
    })
    res.end(body)
  })
  app.get('/returned', async (request) => await request.httpClient('up').get('/x'))
  app.get('/sent', async (request, reply) => reply.send(await request.httpClient('up').get('/x')))
  app.get('/missing', async (request) => await request.httpClient('up').get('/missing'))
  app.get('/object', async () => ({ plain: true }))
  app.get('/teapot', async (_request, reply) => reply.code(418).send({ teapot: true }))

  for (const path of ['/returned', '/sent']) {
    const res = await within(app.inject(path), path)
    t.equal(res.statusCode, 201, `${path}: the downstream status`)
    t.equal(res.body, 'made it', `${path}: the downstream body`)
    t.equal(res.headers['content-type'], 'text/plain; charset=utf-8', `${path}: the downstream content type, not JSON`)
    t.equal(res.headers['x-custom'], 'kept')
    t.same(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'every set-cookie line')
    t.equal(res.headers['content-length'], '7', 'the downstream length of a body sent as it came')
    for (const name of ['keep-alive', 'proxy-authenticate', 'upgrade', 'x-hop', 'transfer-encoding']) {
      t.equal(res.headers[name], undefined, `${path}: ${name} is not passed on`)
    }
  }
  const missing = await within(app.inject('/missing'), '/missing')
  t.equal(missing.statusCode, 404, 'an error status (throwHttpErrors off) is sent as it came')
  t.equal(missing.body, 'no such thing')

  // Other payloads are serialized as before.
  t.same((await within(app.inject('/object'), '/object')).json(), { plain: true })
  const teapot = await within(app.inject('/teapot'), '/teapot')
  t.equal(teapot.statusCode, 418)
  t.same(teapot.json(), { teapot: true })
})

t.test('a large body is streamed through, not buffered', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const chunks = 80 // 5 MiB, five times the service's maxResponseSize: a buffered read would fail
  const { app } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    let sent = 0
    const write = (): void => {
      while (sent < chunks) {
        sent++
        if (!res.write(chunk)) {
          res.once('drain', write)
          return
        }
      }
      res.end()
    }
    write()
  }, { maxResponseSize: 1024 * 1024 })
  app.get('/', async (request) => await request.httpClient('up').get('/'))
  const res = await within(app.inject('/'), 'large body', 30000)
  t.equal(res.statusCode, 200)
  t.equal(res.rawPayload.length, chunks * chunk.length, 'every byte arrived')
  t.equal(res.rawPayload.indexOf('y'), -1)
  t.equal(res.headers['content-type'], 'application/octet-stream')
})

t.test('a gzip body decoded by the client loses content-encoding and content-length; undecoded, it keeps both', async (t) => {
  const text = JSON.stringify({ items: Array.from({ length: 500 }, (_, i) => ({ i, name: `item ${i}` })) })
  const gzipped = gzipSync(text)
  const { app } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gzipped.length })
    res.end(gzipped)
  })
  app.get('/decoded', async (request) => await request.httpClient('up').get('/'))
  app.get('/raw', async (request) => await request.httpClient('up').get('/', { decompress: false }))

  const decoded = await within(app.inject('/decoded'), '/decoded')
  t.equal(decoded.statusCode, 200)
  t.equal(decoded.headers['content-encoding'], undefined, 'the body sent is not encoded')
  t.equal(decoded.headers['content-length'], undefined, 'the encoded length is not sent with the decoded body')
  t.equal(decoded.headers['content-type'], 'application/json')
  t.equal(decoded.body, text)

  const raw = await within(app.inject('/raw'), '/raw')
  t.equal(raw.headers['content-encoding'], 'gzip')
  t.equal(raw.headers['content-length'], String(gzipped.length))
  t.same(raw.rawPayload, gzipped, 'the encoded bytes, untouched')
})

t.test('an upstream that fails mid-body ends the inbound reply, and the app goes on serving', async (t) => {
  const { app } = await setup(t, (req, res) => {
    if (req.url === '/ok') {
      res.end('fine')
      return
    }
    if (req.url === '/early') {
      // Headers, then the connection drops before any byte of the body.
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' })
      res.flushHeaders()
      setTimeout(() => res.socket?.destroy(), 20)
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' })
    res.write(Buffer.alloc(1000, 'a'), () => setTimeout(() => res.socket?.destroy(), 20))
  })
  app.get('/broken', async (request) => await request.httpClient('up').get('/broken'))
  app.get('/ok', async (request) => await request.httpClient('up').get('/ok'))
  app.get('/early', async (request) => await request.httpClient('up').get('/early'))
  app.setErrorHandler(async (err, _request, reply) => await reply.code(502).send(`handled: ${(err as { code?: string }).code ?? ''}`))

  // A real socket: the inbound connection must be cut, not closed as if the body were whole.
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const outcome = await within(new Promise<{ status?: number, received: number, error?: string }>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/broken', agent: false }, (res) => {
      let received = 0
      res.on('data', (c: Buffer) => { received += c.length })
      res.on('end', () => resolve({ status: res.statusCode, received }))
      res.on('error', (err) => resolve({ status: res.statusCode, received, error: err.message }))
    })
    req.on('error', (err) => resolve({ received: 0, error: err.message }))
    req.end()
  }), 'the inbound reply of a broken upstream body')
  t.equal(outcome.status, 200, 'the headers were sent')
  t.ok(outcome.received < 100000, `the body was cut short (${outcome.received} bytes)`)
  t.ok(outcome.error, `the client saw the connection end: ${outcome.error ?? 'no error'}`)

  // Nothing was sent yet: the failure goes to the app's error handler, whose answer is serialized as usual.
  const early = await within(app.inject('/early'), '/early')
  t.equal(early.statusCode, 502)
  t.equal(early.body, 'handled: UND_ERR_SOCKET')

  const ok = await within(app.inject('/ok'), '/ok')
  t.equal(ok.body, 'fine', 'the app goes on serving')
})

t.test('HEAD, 204 and 304 answers carry no body', async (t) => {
  const { app } = await setup(t, (req, res) => {
    if (req.url === '/empty') {
      res.writeHead(204, { 'x-id': '7' })
      res.end()
    } else if (req.url === '/same') {
      res.writeHead(304, { etag: '"v1"' })
      res.end()
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '42' })
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(42))
    }
  })
  app.get('/empty', async (request) => await request.httpClient('up').get('/empty'))
  app.get('/same', async (request) => await request.httpClient('up').get('/same'))
  app.get('/head', async (request) => await request.httpClient('up').head('/doc'))

  const empty = await within(app.inject('/empty'), '/empty')
  t.equal(empty.statusCode, 204)
  t.equal(empty.headers['x-id'], '7')
  t.equal(empty.body, '')
  t.equal(empty.headers['content-type'], undefined, 'no JSON label on an empty answer')

  const same = await within(app.inject('/same'), '/same')
  t.equal(same.statusCode, 304)
  t.equal(same.headers.etag, '"v1"')
  t.equal(same.body, '')

  const head = await within(app.inject('/head'), 'GET of a route returning a HEAD response')
  t.equal(head.statusCode, 200)
  t.equal(head.body, '')
  t.equal(head.headers['content-length'], '0', 'a GET answer says there is no body, not the 42 bytes HEAD stood for')

  const inboundHead = await within(app.inject({ method: 'HEAD', url: '/head' }), 'HEAD of a route returning a HEAD response')
  t.equal(inboundHead.statusCode, 200)
  t.equal(inboundHead.headers['content-length'], '42', 'a HEAD answer keeps the length of the body it stands for')
})

t.test('a response whose body the pipeline read already is sent from memory, with its own length', async (t) => {
  const { app } = await setup(t, (_req, res) => { res.end('unused') })
  app.get('/', async () => {
    const res = HttpResponse.unread(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '999' },
      { service: 'up', method: 'GET', path: '/', origin: 'http://127.0.0.1', maxResponseSize: 1024 })
    res.setText('héllo')
    return res
  })
  const res = await within(app.inject('/'), 'buffered response')
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'héllo')
  t.not(res.headers['content-length'], '999', 'the stale length is not sent')
})

t.test('a response built with the mock kit is sent the same way', async (t) => {
  const { app } = await setup(t, (_req, res) => { res.end('unused') })
  app.get('/', async () => mockResponse({ status: 202, json: { queued: true }, headers: { 'x-job': '12' } }))
  const res = await within(app.inject('/'), 'mock response')
  t.equal(res.statusCode, 202)
  t.equal(res.headers['x-job'], '12')
  t.same(res.json(), { queued: true })
})

t.test('reply.type() set to a non-JSON type before sending a response: the downstream answer still goes out', async (t) => {
  const { app } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/csv' })
    res.end('a,b\n1,2\n')
  })
  app.get('/', async (request, reply) => reply.type('text/plain').send(await request.httpClient('up').get('/')))
  const res = await within(app.inject('/'), 'typed reply')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/csv', "the downstream's type")
  t.equal(res.body, 'a,b\n1,2\n')
})

t.test('a response that cannot be sent is refused with a typed error, and its connection is let go', async (t) => {
  const { app, upstream } = await setup(t, (req, res) => {
    if (req.url === '/odd') {
      // Status 600 is a number node:http and undici carry, but no HTTP status Fastify will send. Its body never
      // ends: the connection is free again only if the refused response's body is destroyed.
      res.writeHead(600, { 'content-type': 'text/plain' })
      res.write('a body that goes on')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '9' })
    res.end('read once')
  }, { connections: 1 })
  app.get('/read', async (request) => {
    const res = await request.httpClient('up').get('/')
    await res.text()
    return res
  })
  app.get('/read-typed', async (request, reply) => {
    const res = await request.httpClient('up').get('/')
    await res.text()
    return reply.type('text/plain').send(res)
  })
  app.get('/odd', async (request) => await request.httpClient('up').get('/odd'))
  app.get('/after', async (request) => await request.httpClient('up').get('/'))

  for (const path of ['/read', '/read-typed']) {
    const res = await within(app.inject(path), path)
    t.equal(res.statusCode, 500, path)
    t.match(res.json(), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /already read/ }, path)
  }
  const odd = await within(app.inject('/odd'), '/odd')
  t.equal(odd.statusCode, 500)
  t.match(odd.json(), { code: 'FST_ERR_BAD_STATUS_CODE' })
  // One connection: the refused answer's body must not hold it.
  const after = await within(app.inject('/after'), '/after')
  t.equal(after.body, 'read once', 'the next call gets the connection')
  t.equal(upstream.requests.length, 4)
})

import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import { createHttpServices, type Logger } from '../../index'
import { startProxy } from '../helpers/proxy'
import { closedPort, sendJson, startServer } from '../helpers/server'

interface Line { level: string, obj: Record<string, unknown>, msg?: string }

/** A pino-like logger that records every line with its bindings. */
function captureLogger (): { logger: Logger, lines: Line[] } {
  const lines: Line[] = []
  const make = (bindings: Record<string, unknown>): Logger => {
    const at = (level: string) => (obj: object, msg?: string) => { lines.push({ level, obj: { ...bindings, ...obj }, msg }) }
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (b) => make({ ...bindings, ...b }) }
  }
  return { logger: make({}), lines }
}

t.test('retries a 503 twice then returns the 200, logging each retry at warn', async (t) => {
  let hits = 0
  const server = await startServer((_req, res) => {
    hits++
    if (hits <= 2) sendJson(res, 503, { error: 'busy' })
    else sendJson(res, 200, { ok: true })
  })
  const { logger, lines } = captureLogger()
  const services = createHttpServices({ logger, services: { api: { baseUrl: server.url, retry: { baseDelay: 5 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  const res = await services.client('api').get('/items', { query: { token: 's3cret' } })
  t.equal(res.status, 200)
  t.same(await res.json(), { ok: true })
  t.equal(res.attempts, 3, 'the response tells how many attempts it took')
  t.equal(server.requests.length, 3, 'the server saw three requests')

  const warns = lines.filter((l) => l.level === 'warn')
  t.equal(warns.length, 2, 'one warn line per retry, none for the success')
  for (const [i, w] of warns.entries()) {
    t.match(w.obj, { service: 'api', method: 'GET', path: '/items?token=***', attempt: i + 1, of: 4, reason: 'status 503' })
    t.type(w.obj.delayMs, 'number')
    t.ok((w.obj.delayMs as number) >= 0 && (w.obj.delayMs as number) <= 5 * 2 ** i, `retry ${i + 1} waits within its backoff`)
    t.match(w.msg, /^retrying GET api/)
    t.notMatch(JSON.stringify(w), /s3cret/, 'no secret in the log line')
  }
  const stats = services.stats().api
  t.equal(stats.requests, 1, 'one logical request')
  t.equal(stats.attempts, 3, 'three attempts counted')
  t.match(stats.retry, { retries: 2, budgetExhausted: 0 })
})

t.test('gives up after the last retry with an HttpStatusError carrying attempts, logging once', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 502, { error: 'bad gateway' }))
  const { logger, lines } = captureLogger()
  const services = createHttpServices({ logger, services: { api: { baseUrl: server.url, retry: { attempts: 2, baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 502, attempts: 3, detail: 'bad gateway' })
  t.equal(server.requests.length, 3)
  const warns = lines.filter((l) => l.level === 'warn')
  t.equal(warns.filter((l) => /^retrying/.test(l.msg ?? '')).length, 2)
  const giveUps = warns.filter((l) => /^giving up/.test(l.msg ?? ''))
  t.equal(giveUps.length, 1, 'giving up is logged once')
  t.match(giveUps[0].obj, { service: 'api', attempt: 3, of: 3, reason: 'status 502', why: 'no retries left' })
})

t.test('each retry line says where its wait came from and which upstream answered', async (t) => {
  const answers: Array<[number, Record<string, string>]> = [
    [503, { 'retry-after': '0' }],
    [429, { 'x-ratelimit-reset': '0' }],
    [500, {}],
    [200, {}]
  ]
  let hits = 0
  const server = await startServer((_req, res) => {
    const [status, headers] = answers[hits++]
    sendJson(res, status, {}, headers)
  })
  const { logger, lines } = captureLogger()
  const services = createHttpServices({ logger, services: { api: { baseUrl: server.url, retry: { baseDelay: 1, budget: false } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  t.equal((await services.client('api').get('/x')).status, 200)
  const retries = lines.filter((l) => /^retrying/.test(l.msg ?? ''))
  t.same(retries.map((l) => l.obj.delaySource), ['retry-after', 'x-ratelimit-reset', 'backoff'])
  t.same(retries.map((l) => l.obj.upstream), [server.url, server.url, server.url])
  t.match(retries[0].msg, /next in 0 ms as Retry-After asks$/)
  t.match(retries[1].msg, /next in 0 ms as X-RateLimit-Reset asks$/)
  t.match(retries[2].msg, /next in \d+ ms$/)
})

t.test('each failed body is read or dropped before the next attempt, so one connection is enough', async (t) => {
  let hits = 0
  const server = await startServer((_req, res) => {
    hits++
    if (hits === 1) {
      sendJson(res, 503, { error: 'small body, read to its end' })
    } else if (hits === 2) {
      // A large body of unknown length: destroyed rather than read.
      res.writeHead(503, { 'content-type': 'text/plain' })
      res.end(Buffer.alloc(256 * 1024, 'x'))
    } else {
      sendJson(res, 200, { ok: true })
    }
  })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, connections: 1, timeout: 5000, retry: { baseDelay: 1 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  t.same(await res.json(), { ok: true })
  t.equal(res.attempts, 3)
})

t.test('a small failed body of unknown length (chunked, or gzip: decoded) is read to its end: the connection is kept', async (t) => {
  const { gzipSync } = await import('node:zlib')
  let hits = 0
  const sockets = new Set<Socket>()
  const server = await startServer((req, res) => {
    hits++
    sockets.add(req.socket)
    // Each body ends a little after its first bytes (within the 100 ms backoff, while it is discarded): a body
    // dropped before its end would take its connection along.
    if (hits === 1) {
      res.writeHead(503, { 'content-type': 'text/plain' }) // chunked
      res.write('busy, ')
      setTimeout(() => res.end('try again'), 30)
    } else if (hits === 2) {
      const body = gzipSync(Buffer.from(JSON.stringify({ error: 'busy' })))
      res.writeHead(503, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': body.length })
      res.write(body.subarray(0, 10))
      setTimeout(() => res.end(body.subarray(10)), 30)
    } else {
      sendJson(res, 200, { ok: true })
    }
  })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, connections: 1, timeout: 5000, retry: { baseDelay: 100, jitter: 'none' } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  t.same(await services.client('api').getJson('/x'), { ok: true })
  t.equal(hits, 3)
  t.equal(sockets.size, 1, 'the three attempts shared one connection')
})

t.test('never retries a 4xx other than 408 and 429', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 404, { error: 'no such thing' }))
  const { logger, lines } = captureLogger()
  const services = createHttpServices({ logger, services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 404, attempts: 1 })
  t.equal(server.requests.length, 1)
  t.equal(lines.filter((l) => l.level === 'warn').length, 0, 'nothing to log')
})

t.test('retries 408 and 429 too', async (t) => {
  const statuses = [408, 429, 200]
  const server = await startServer((_req, res) => sendJson(res, statuses.shift() ?? 500, {}))
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 3)
})

t.test('per-call retry overrides the service: 0 turns it off, a number sets attempts, an object merges', async (t) => {
  const server = await startServer((req, res) => {
    sendJson(res, req.url === '/missing' ? 404 : 503, {})
  })
  const services = createHttpServices({
    services: {
      on: { baseUrl: server.url, retry: { attempts: 3, baseDelay: 1 } },
      off: { baseUrl: server.url, retry: false }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const on = services.client('on')
  const off = services.client('off')
  const seen = (): number => server.requests.splice(0).length

  await t.rejects(on.get('/x', { retry: 0 }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 }, 'retry: 0')
  t.equal(seen(), 1)
  await t.rejects(on.get('/x', { retry: false }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 }, 'retry: false')
  t.equal(seen(), 1)
  await t.rejects(on.get('/x', { retry: 1 }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 2 }, 'retry: 1 keeps the service\'s delays')
  t.equal(seen(), 2)
  await t.rejects(on.get('/missing', { retry: { statusCodes: [404], attempts: 2 } }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 404, attempts: 3 }, 'statusCodes per call')
  t.equal(seen(), 3)

  await t.rejects(off.get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 }, 'the service has retries off')
  t.equal(seen(), 1)
  await t.rejects(off.get('/x', { retry: { attempts: 2, baseDelay: 1 } }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 3 }, 'a call turns them on')
  t.equal(seen(), 3)
  await t.rejects(off.get('/x', { retry: 1 }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 2 }, 'a number turns them on with the default delays')
  t.equal(seen(), 2)

  await t.rejects(on.get('/x', { retry: { attempts: -1 } }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'retry.attempts' })
  await t.rejects(on.get('/x', { retry: { atempts: 2 } as never }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message: /did you mean "attempts"/ })
  t.equal(seen(), 0, 'bad retry options send nothing')
})

t.test('a hoisted per-call retry object is checked once and reused', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const twice = { attempts: 1, baseDelay: 1 }
  for (let i = 0; i < 3; i++) await t.rejects(services.client('api').get('/x', { retry: twice }), { code: 'HTTP_SERVICES_ERR_STATUS', attempts: 2 })
  t.equal(server.requests.length, 6)
})

t.test('a POST is not retried once the server got it', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').post('/orders', { json: { n: 1 } }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 })
  await t.rejects(services.client('api').patch('/orders/1', { json: { n: 1 } }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 })
  t.same(server.requests.map((r) => r.method), ['POST', 'PATCH'], 'each reached the server once')
})

t.test('a POST is retried when the connection was refused (it was never sent)', async (t) => {
  const port = await closedPort()
  let upstream: Server | undefined
  const sockets = new Set<Socket>()
  const bodies: string[] = []
  const services = createHttpServices({
    services: {
      api: {
        baseUrl: `http://127.0.0.1:${port}`,
        retry: {
          // The upstream comes up only after the first attempt was refused.
          delay: () => {
            if (upstream === undefined) {
              upstream = createServer((req, res) => {
                let body = ''
                req.on('data', (c: Buffer) => { body += c.toString() })
                req.on('end', () => { bodies.push(body); sendJson(res, 201, { created: true }) })
              })
              upstream.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
              upstream.listen(port, '127.0.0.1')
            }
            return 100
          }
        }
      }
    }
  })
  await services.open()
  t.teardown(async () => {
    await services.close()
    for (const s of sockets) s.destroy()
    if (upstream !== undefined) await new Promise((resolve) => upstream?.close(resolve))
  })
  const res = await services.client('api').post('/orders', { json: { n: 1 } })
  t.equal(res.status, 201)
  t.equal(res.attempts, 2)
  t.same(bodies, ['{"n":1}'], 'the server got the POST once, whole')
})

t.test('a POST with an Idempotency-Key is retried, with the same key on every attempt', async (t) => {
  let hits = 0
  const server = await startServer((_req, res) => {
    hits++
    sendJson(res, hits % 2 === 1 ? 503 : 200, {})
  })
  const services = createHttpServices({
    services: {
      generated: { baseUrl: server.url, retry: { baseDelay: 1, idempotencyKey: true } },
      own: { baseUrl: server.url, retry: { baseDelay: 1 } }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  const res = await services.client('generated').post('/pay', { json: { amount: 5 } })
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  const [first, second] = server.requests.splice(0)
  t.match(first.headers['idempotency-key'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUID')
  t.equal(second.headers['idempotency-key'], first.headers['idempotency-key'], 'the same key on the retry')
  t.equal(second.body, '{"amount":5}', 'the body is sent again')

  await services.client('generated').post('/pay', { json: { amount: 6 } })
  const [third] = server.requests.splice(0)
  t.not(third.headers['idempotency-key'], first.headers['idempotency-key'], 'a new key for a new call')

  const own = await services.client('own').post('/pay', { headers: { 'Idempotency-Key': 'k-1' } })
  t.equal(own.attempts, 2, 'the caller\'s own key makes a POST retryable')
  t.same(server.requests.map((r) => r.headers['idempotency-key']), ['k-1', 'k-1'])

  await services.client('generated').get('/pay')
  t.equal(server.requests.at(-1)?.headers['idempotency-key'], undefined, 'no key on a GET')
})

t.test('a stream body is never replayed', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').put('/file', { body: Readable.from(['chunk-1', 'chunk-2']) }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1 })
  t.equal(server.requests.length, 1)
  t.equal(server.requests[0].body, 'chunk-1chunk-2')
})

t.test('a connection cut before the response is retried for a GET, not for a POST', async (t) => {
  let cut = true
  const server = await startServer((req, res) => {
    if (cut) {
      cut = false
      req.socket.destroy()
      return
    }
    sendJson(res, 200, { ok: true })
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(server.requests.length, 2)

  cut = true
  await t.rejects(services.client('api').post('/x', { json: {} }), { code: 'HTTP_SERVICES_ERR_CONNECTION', errno: 'UND_ERR_SOCKET', attempts: 1 })
  t.equal(server.requests.length, 3, 'the POST reached the server once')
})

t.test('a request body cut mid-upload is retried for a PUT, not for a POST', async (t) => {
  let uploads = 0
  const sockets = new Set<Socket>()
  const upstream = createServer((req, res) => {
    uploads++
    if (uploads === 1 || req.method === 'POST') {
      req.once('data', () => req.socket.destroy())
      return
    }
    req.resume()
    req.on('end', () => sendJson(res, 200, { ok: true }))
  })
  upstream.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const port = (upstream.address() as { port: number }).port
  const services = createHttpServices({ services: { api: { baseUrl: `http://127.0.0.1:${port}`, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => {
    await services.close()
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => upstream.close(resolve))
  })
  const big = Buffer.alloc(4 * 1024 * 1024, 'x')
  const res = await services.client('api').put('/blob', { body: big })
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(uploads, 2)

  await t.rejects(services.client('api').post('/blob', { body: big }), { code: 'HTTP_SERVICES_ERR_CONNECTION', attempts: 1 })
  t.equal(uploads, 3, 'the POST started once')
})

t.test('a keep-alive socket the server drops as it is reused: the GET is retried on a new connection', async (t) => {
  const served = new WeakMap<Socket, number>()
  let connections = 0
  const server = await startServer((req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1
    served.set(req.socket, n)
    // The server's idle timer fires just as the client sends its next request on the socket.
    if (n > 1) {
      req.socket.destroy()
      return
    }
    sendJson(res, 200, { n: connections })
  })
  server.server.on('connection', () => { connections++ })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, connections: 1, keepAliveTimeout: 30000, retry: { baseDelay: 1 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')

  const first = await api.get('/a')
  t.same(await first.json(), { n: 1 })
  t.equal(first.attempts, 1)
  const second = await api.get('/b')
  t.same(await second.json(), { n: 2 }, 'answered on a second connection')
  t.equal(second.attempts, 2, 'after one transparent retry')
  t.equal(connections, 2)
})

t.test('the caller\'s abort during a backoff sleep ends the call at once, without another attempt', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { delay: () => 60000 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const controller = new AbortController()
  const call = services.client('api').get('/x', { signal: controller.signal })
  while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 20))
  controller.abort()
  await t.rejects(call, { code: 'HTTP_SERVICES_ERR_ABORTED', attempts: 1 })
  t.equal(server.requests.length, 1)
})

t.test('a connection refused on every attempt fails with the connection error and its attempts', async (t) => {
  const port = await closedPort()
  const services = createHttpServices({ services: { api: { baseUrl: `http://127.0.0.1:${port}`, retry: { attempts: 2, baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close() })
  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_CONNECTION', errno: 'ECONNREFUSED', attempts: 3 })
  t.equal(services.stats().api.attempts, 3)
})

t.test('a custom delay function gets the retry number and the failed outcome', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 500, {}))
  const seen: Array<[number, unknown]> = []
  const { logger, lines } = captureLogger()
  const services = createHttpServices({
    logger,
    services: { api: { baseUrl: server.url, retry: { attempts: 2, delay: (n, outcome) => { seen.push([n, (outcome as { status: number }).status]); return 1 } } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 500, attempts: 3 })
  t.same(seen, [[1, 500], [2, 500]])
  t.same(lines.filter((l) => /^retrying/.test(l.msg ?? '')).map((l) => l.obj.delaySource), ['delay', 'delay'])
})

t.test('a proxy answering CONNECT with 502, 503 or 504 is retried, even for a POST; 403 and 407 are not', async (t) => {
  for (const [status, errno, tries] of [
    [502, 'ERR_PROXY_CONNECT_STATUS', 3],
    [503, 'ERR_PROXY_CONNECT_STATUS', 3],
    [504, 'ERR_PROXY_CONNECT_STATUS', 3],
    [403, 'ERR_PROXY_CONNECT_STATUS', 1],
    [407, 'ERR_PROXY_AUTH_REQUIRED', 1]
  ] as const) {
    const proxy = await startProxy({ refuseConnect: status })
    const services = createHttpServices({
      services: { api: { baseUrl: 'https://billing.internal:8443', proxy: proxy.url, retry: { attempts: 2, baseDelay: 1 } } }
    })
    await services.open()
    const err = await services.client('api').post('/orders', { json: {} }).then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', errno, attempts: tries }, `CONNECT answered ${status}`)
    t.equal(proxy.seen.filter((r) => r.method === 'CONNECT').length, tries, `${tries} CONNECT for ${status}`)
    await services.close()
    await proxy.close()
  }
})

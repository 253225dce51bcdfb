import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2'
import { inspect } from 'node:util'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import httpServices, {
  ConnectionError,
  TimeoutError,
  TlsError,
  createHttpServices,
  type CreateHttpServicesOptions,
  type HttpServicesError,
  type ServiceOptions
} from '../../index'
import { testCerts } from '../helpers/certs'
import { startProxy, withCredentials, type TestProxy, type TestProxyOptions } from '../helpers/proxy'
import { closedPort, sendJson, startServer, type Handler, type TestServer } from '../helpers/server'

const certs = testCerts()
const user = 'alice'
const password = 'pr0xy-s3cret'
const basic = Buffer.from(`${user}:${password}`).toString('base64')

async function upstream (t: tap.Test, handler: Handler = (req, res, seen) => sendJson(res, 200, { url: seen.url, host: req.headers.host ?? null })): Promise<TestServer> {
  const s = await startServer(handler)
  t.teardown(async () => await s.close())
  return s
}

async function proxyServer (t: tap.Test, options: TestProxyOptions = {}): Promise<TestProxy> {
  const p = await startProxy(options)
  t.teardown(async () => await p.close())
  return p
}

/** An https (h2 + http/1.1) upstream signed by the test CA; it answers with the protocol version it saw. */
async function httpsUpstream (t: tap.Test): Promise<{ url: string, port: number, seen: string[] }> {
  const seen: string[] = []
  const server = createSecureServer({ key: certs.serverKey, cert: certs.serverCert, allowHTTP1: true },
    (req: Http2ServerRequest, res: Http2ServerResponse) => {
      seen.push(req.url)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ httpVersion: req.httpVersion, url: req.url }))
    })
  const sockets = new Set<import('node:net').Socket>()
  server.on('connection', (s: import('node:net').Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as import('node:net').AddressInfo).port
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `https://127.0.0.1:${port}`, port, seen }
}

async function services (t: tap.Test, service: ServiceOptions, extra: Partial<CreateHttpServicesOptions> = {}) {
  const s = createHttpServices({ defaults: { retry: false }, ...extra, services: { api: service } })
  await s.open()
  t.teardown(async () => await s.close())
  return s
}

async function caught<E = HttpServicesError> (promise: Promise<unknown>): Promise<E> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as E)
}

/** Everything an error shows: message, stack, enumerable fields and its causes, as logs and error handlers see them. */
function everything (err: unknown): string {
  return `${inspect(err, { depth: 10, showHidden: true })}\n${JSON.stringify(err)}\n${(err as Error).stack ?? ''}`
}

function assertNoSecret (t: tap.Test, text: string, what: string): void {
  t.notOk(text.includes(password), `${what}: no password`)
  t.notOk(text.includes(basic), `${what}: no Basic credentials`)
}

t.test('a plain http call is forwarded by the proxy (absolute-form request) with Basic proxy credentials', async (t) => {
  const target = await upstream(t)
  const proxy = await proxyServer(t, { auth: { username: user, password } })
  const s = await services(t, { baseUrl: target.url, proxy: withCredentials(proxy.url, user, password) })
  const body = await s.client('api').getJson('/users?id=7')
  t.same(body, { url: '/users?id=7', host: `127.0.0.1:${target.port}` })
  t.equal(proxy.seen.length, 1)
  t.match(proxy.seen[0], { method: 'GET', url: `${target.url}/users?id=7` })
  t.equal(proxy.seen[0].headers['proxy-authorization'], `Basic ${basic}`)
  t.equal(proxy.seen[0].headers.host, `127.0.0.1:${target.port}`)
  t.equal(target.requests.length, 1, 'the upstream got the request through the proxy')
})

t.test('an https call is tunnelled with CONNECT; the service tls (test CA) and allowH2 apply through the tunnel', async (t) => {
  const target = await httpsUpstream(t)
  const proxy = await proxyServer(t, { auth: { username: user, password } })
  const s = await services(t, { baseUrl: target.url, proxy: withCredentials(proxy.url, user, password), tls: { ca: certs.ca }, allowH2: true })
  t.same(await s.client('api').getJson('/a'), { httpVersion: '2.0', url: '/a' })
  t.same(await s.client('api').getJson('/b'), { httpVersion: '2.0', url: '/b' })
  const connects = proxy.seen.filter((r) => r.method === 'CONNECT')
  t.equal(connects.length, 1, 'one tunnel carried both calls (h2)')
  t.equal(connects[0].url, `127.0.0.1:${target.port}`)
  t.equal(connects[0].headers['proxy-authorization'], `Basic ${basic}`)
  t.equal(proxy.seen.length, 1, 'the proxy saw nothing but the CONNECT')
})

t.test('without the test CA the upstream certificate is refused through the tunnel: TlsError', async (t) => {
  const target = await httpsUpstream(t)
  const proxy = await proxyServer(t)
  const s = await services(t, { baseUrl: target.url, proxy: proxy.url })
  const err = await caught(s.client('api').get('/'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.notMatch(err.message, /proxy/, 'the failure is the upstream\'s, not the proxy\'s')
  t.equal(target.seen.length, 0)
})

t.test('{ uri, token, headers }: the token is the Proxy-Authorization value and the headers go to the proxy', async (t) => {
  const target = await upstream(t)
  const httpsTarget = await httpsUpstream(t)
  const proxy = await proxyServer(t, { authorization: 'Bearer proxy-token-1' })
  const proxyOptions = { uri: proxy.url, token: 'Bearer proxy-token-1', headers: { 'X-Proxy-Tag': 'blue' } }
  const s = createHttpServices({
    defaults: { retry: false, proxy: proxyOptions },
    services: { plain: { baseUrl: target.url }, secure: { baseUrl: httpsTarget.url, tls: { ca: certs.ca } } }
  })
  await s.open()
  t.teardown(async () => await s.close())
  t.equal((await s.client('plain').get('/x')).status, 200)
  t.equal((await s.client('secure').get('/y')).status, 200)
  t.match(proxy.seen, [
    { method: 'GET', headers: { 'proxy-authorization': 'Bearer proxy-token-1', 'x-proxy-tag': 'blue' } },
    { method: 'CONNECT', headers: { 'proxy-authorization': 'Bearer proxy-token-1', 'x-proxy-tag': 'blue' } }
  ])
  t.same(proxyOptions.headers, { 'X-Proxy-Tag': 'blue' }, 'the user\'s header object is left alone')
})

t.test('proxy: false in a service turns off the proxy of defaults', async (t) => {
  const target = await upstream(t)
  const proxy = await proxyServer(t)
  const s = createHttpServices({ defaults: { retry: false, proxy: proxy.url }, services: { api: { baseUrl: target.url, proxy: false } } })
  await s.open()
  t.teardown(async () => await s.close())
  t.equal((await s.client('api').get('/')).status, 200)
  t.equal(proxy.seen.length, 0)
  t.equal(target.requests.length, 1)
  t.notOk('proxy' in s.stats().api)
})

t.test('a refusing proxy (closed port) gives a 502 ConnectionError naming the proxy without its password', async (t) => {
  const port = await closedPort()
  const proxyUrl = `http://${user}:${password}@127.0.0.1:${port}`
  for (const baseUrl of ['http://upstream.invalid:8080', 'https://upstream.invalid']) {
    const s = await services(t, { baseUrl, proxy: proxyUrl })
    const err = await caught<ConnectionError>(s.client('api').get('/orders?token=abc'))
    t.ok(err instanceof ConnectionError, `${baseUrl}: a ConnectionError (got ${String(err)})`)
    t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', statusCode: 502, errno: 'ECONNREFUSED', service: 'api', method: 'GET', url: '/orders?token=***' })
    t.match(err.message, `proxy 127.0.0.1:${port} refused the connection`)
    t.notMatch(err.message, /abc/)
    assertNoSecret(t, everything(err), baseUrl)
    await s.close()
  }
})

t.test('a refused proxy connection is retried like any refused connection (it was never sent), even for a POST', async (t) => {
  const port = await closedPort()
  const s = await services(t, { baseUrl: 'http://upstream.invalid', proxy: `http://127.0.0.1:${port}`, retry: { attempts: 2, baseDelay: 1, maxDelay: 1 } })
  const err = await caught(s.client('api').post('/orders', { json: { a: 1 } }))
  t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', errno: 'ECONNREFUSED', attempts: 3 })
})

t.test('wrong proxy credentials: a 502 ConnectionError saying the proxy wants authentication, forwarded or tunnelled', async (t) => {
  const target = await upstream(t)
  const httpsTarget = await httpsUpstream(t)
  const proxy = await proxyServer(t, { auth: { username: user, password: 'another' } })
  for (const baseUrl of [target.url, httpsTarget.url]) {
    const s = await services(t, { baseUrl, proxy: withCredentials(proxy.url, user, password), tls: { ca: certs.ca } })
    const err = await caught<ConnectionError>(s.client('api').get('/'))
    t.ok(err instanceof ConnectionError, `${baseUrl}: a ConnectionError (got ${String(err)})`)
    t.match(err, { statusCode: 502, errno: 'ERR_PROXY_AUTH_REQUIRED' })
    t.match(err.message, `proxy 127.0.0.1:${proxy.port} answered 407 (authentication required): check the proxy credentials`)
    assertNoSecret(t, everything(err), baseUrl)
    await s.close()
  }
  t.equal(target.requests.length + httpsTarget.seen.length, 0, 'nothing reached the upstreams')
})

t.test('a proxy that refuses the CONNECT gives a 502 ConnectionError with the status and the target', async (t) => {
  const proxy = await proxyServer(t, { refuseConnect: 403 })
  const s = await services(t, { baseUrl: 'https://billing.internal:8443', proxy: proxy.url })
  const err = await caught<ConnectionError>(s.client('api').get('/'))
  t.ok(err instanceof ConnectionError)
  t.match(err, { statusCode: 502, errno: 'ERR_PROXY_CONNECT_STATUS' })
  t.match(err.message, `proxy 127.0.0.1:${proxy.port} answered 403 to CONNECT billing.internal:8443`)
})

t.test('a proxy that never answers the CONNECT fails the call with a connect TimeoutError naming it', async (t) => {
  const proxy = await proxyServer(t, { hangConnect: true })
  const s = await services(t, { baseUrl: 'https://billing.internal', proxy: proxy.url, timeout: { connect: 100 } })
  const err = await caught<TimeoutError>(s.client('api').get('/'))
  t.ok(err instanceof TimeoutError, `a TimeoutError (got ${String(err)})`)
  t.match(err, { statusCode: 504, phase: 'connect', timeout: 100 })
  t.match(err.message, `proxy 127.0.0.1:${proxy.port} did not answer within 100 ms`)
})

t.test('an https proxy: proxy.tls trusts its certificate; without it the handshake fails with a TlsError naming the proxy', async (t) => {
  const target = await upstream(t)
  const proxy = await proxyServer(t, { tls: { key: certs.serverKey, cert: certs.serverCert } })
  const ok = await services(t, { baseUrl: target.url, proxy: { uri: proxy.url, tls: { ca: certs.ca } } })
  t.equal((await ok.client('api').get('/')).status, 200)
  t.match(proxy.seen, [{ method: 'CONNECT', url: `127.0.0.1:${target.port}` }], 'an https proxy is always tunnelled')
  const bad = await services(t, { baseUrl: target.url, proxy: proxy.url })
  const err = await caught<TlsError>(bad.client('api').get('/'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.match(err.message, `proxy 127.0.0.1:${proxy.port} TLS failure`)
})

t.test('pool limits apply through the proxy: connections bounds the forwarded and the tunnelled connections', async (t) => {
  let active = 0
  let peak = 0
  const target = await upstream(t, (_req, res) => {
    active++
    peak = Math.max(peak, active)
    setTimeout(() => { active--; sendJson(res, 200, {}) }, 20)
  })
  const proxy = await proxyServer(t)
  const s = await services(t, { baseUrl: target.url, proxy: proxy.url, connections: 2 })
  await Promise.all(Array.from({ length: 6 }, async () => await (await s.client('api').get('/')).text()))
  t.equal(proxy.connections, 2, 'two connections to the proxy carried six forwarded calls')
  t.equal(peak, 2)

  const httpsTarget = await httpsUpstream(t)
  const tunnels = await proxyServer(t)
  const h = await services(t, { baseUrl: httpsTarget.url, proxy: tunnels.url, tls: { ca: certs.ca }, connections: 2 })
  await Promise.all(Array.from({ length: 6 }, async () => await (await h.client('api').get('/')).text()))
  t.equal(tunnels.seen.filter((r) => r.method === 'CONNECT').length, 2, 'two tunnels carried six calls')
})

t.test('the pipeline applies through the proxy: a 503 is retried, a slow upstream hits the headers timeout', async (t) => {
  let n = 0
  const target = await upstream(t, (_req, res) => {
    if (++n === 1) sendJson(res, 503, { busy: true })
    else if (n === 2) sendJson(res, 200, { ok: true })
    // and then never answers
  })
  const proxy = await proxyServer(t)
  const s = await services(t, { baseUrl: target.url, proxy: proxy.url, retry: { attempts: 1, baseDelay: 1, maxDelay: 1 }, timeout: { headers: 50 } })
  const res = await s.client('api').get('/')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(proxy.seen.length, 2, 'both attempts went through the proxy')
  const err = await caught<TimeoutError>(s.client('api').get('/never', { retry: false }))
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'headers' })
  t.notMatch(err.message, /proxy/, 'a slow upstream is not the proxy\'s failure')
})

t.test('stats show the proxy without its credentials', async (t) => {
  const target = await upstream(t)
  const proxy = await proxyServer(t, { auth: { username: user, password } })
  const s = await services(t, { baseUrl: target.url, proxy: withCredentials(proxy.url, user, password) })
  await (await s.client('api').get('/')).text()
  const stats = s.stats()
  t.equal(stats.api.proxy, proxy.url)
  assertNoSecret(t, JSON.stringify(stats), 'stats')
  assertNoSecret(t, `${JSON.stringify([...s.resolved.services.values()])}${inspect(s.resolved, { depth: 10 })}`, 'resolved options')
})

t.test('credentials never reach the logs: a Fastify app whose proxied call fails logs no secret', async (t) => {
  const port = await closedPort()
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(httpServices, {
    services: {
      api: { baseUrl: 'https://upstream.invalid', proxy: `http://${user}:${password}@127.0.0.1:${port}`, retry: { attempts: 1, baseDelay: 1, maxDelay: 1 } },
      tokened: { baseUrl: 'http://upstream.invalid', proxy: { uri: `http://127.0.0.1:${port}`, token: `Basic ${basic}` }, retry: false }
    }
  })
  app.get('/', async (request) => await request.httpClient('api').getJson('/'))
  app.get('/tokened', async (request) => await request.httpClient('tokened').getJson('/'))
  t.teardown(async () => await app.close())
  const res = await app.inject('/')
  t.equal(res.statusCode, 502)
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  t.equal((await app.inject('/tokened')).statusCode, 502)
  const log = lines.join('')
  t.match(log, /retrying GET api/, 'the retry was logged')
  t.match(log, `proxy 127.0.0.1:${port} refused the connection`, 'the error was logged')
  assertNoSecret(t, log, 'logs')
  assertNoSecret(t, res.body, 'reply')
})

/** Unsets the environment variables `names` for the test, restoring them after it. */
function clearEnv (t: Test, names: string[]): void {
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]))
  t.teardown(() => {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n]
      else process.env[n] = saved[n]
    }
  })
  for (const n of names) delete process.env[n]
}

t.test("proxy: 'env' follows HTTP_PROXY / HTTPS_PROXY, and NO_PROXY bypasses the proxy", async (t) => {
  const names = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy']
  clearEnv(t, names)
  const target = await upstream(t)
  const httpsTarget = await httpsUpstream(t)
  const proxy = await proxyServer(t, { auth: { username: user, password } })
  process.env.HTTP_PROXY = withCredentials(proxy.url, user, password)
  process.env.HTTPS_PROXY = withCredentials(proxy.url, user, password)
  const s = createHttpServices({
    defaults: { retry: false, proxy: 'env' },
    services: { plain: { baseUrl: target.url }, secure: { baseUrl: httpsTarget.url, tls: { ca: certs.ca } } }
  })
  await s.open()
  t.teardown(async () => await s.close())

  t.equal((await s.client('plain').get('/via-proxy')).status, 200)
  t.equal((await s.client('secure').get('/via-tunnel')).status, 200)
  t.match(proxy.seen, [
    { method: 'GET', url: `${target.url}/via-proxy`, headers: { 'proxy-authorization': `Basic ${basic}` } },
    { method: 'CONNECT', url: `127.0.0.1:${httpsTarget.port}`, headers: { 'proxy-authorization': `Basic ${basic}` } }
  ])
  t.equal(s.stats().plain.proxy, 'env')

  process.env.NO_PROXY = `localhost, 127.0.0.1:${target.port}`
  t.equal((await s.client('plain').get('/direct')).status, 200)
  t.equal(proxy.seen.length, 2, 'NO_PROXY sent the call straight to the upstream')
  t.equal(target.requests.at(-1)?.url, '/direct')

  await proxy.close()
  const direct = await s.client('plain').get('/direct-again')
  t.equal(direct.status, 200, 'a bypassed upstream does not need the proxy')
  const err = await caught<ConnectionError>(s.client('secure').get('/'))
  t.match(err, { errno: 'ECONNREFUSED', message: `proxy 127.0.0.1:${proxy.port} refused the connection` })
  assertNoSecret(t, everything(err), 'env proxy error')
})

t.test("proxy: 'env' without proxy variables goes straight to the upstream; a malformed variable is refused at open", async (t) => {
  const names = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy']
  clearEnv(t, names)
  const target = await upstream(t)
  const s = await services(t, { baseUrl: target.url, proxy: 'env' })
  t.equal((await s.client('api').get('/')).status, 200)
  t.equal(target.requests.length, 1)

  process.env.https_proxy = `socks://${user}:${password}@127.0.0.1:1080`
  const bad = createHttpServices({ services: { api: { baseUrl: 'https://x.test', proxy: 'env' } } })
  const err = await caught(bad.open())
  t.match(err, { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message: /services\.api\.proxy: .*HTTPS_PROXY.* is not an http\(s\) URL/ })
  assertNoSecret(t, everything(err), 'malformed env proxy error')
  await bad.close()
})

t.test('an injected dispatcher (the mock kit, MockAgent) is used as it is, proxy or not', async (t) => {
  const { MockAgent } = await import('undici')
  const agent = new MockAgent()
  agent.disableNetConnect()
  agent.get('http://api.test').intercept({ path: '/' }).reply(200, { ok: true })
  const s = createHttpServices({ dispatcher: agent, services: { api: { baseUrl: 'http://api.test', proxy: 'http://127.0.0.1:1' } } })
  await s.open()
  t.teardown(async () => { await s.close(); await agent.close() })
  t.same(await s.client('api').getJson('/'), { ok: true })
})

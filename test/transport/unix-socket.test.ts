import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConnectionError, createHttpServices, type ServiceOptions } from '../../index'
import { testCerts } from '../helpers/certs'

// A socket path must fit in sockaddr_un (108 bytes on Linux); the fixture directory of a deep checkout may not.
const fixtures = t.testdir()
const dir = fixtures.length < 80 ? fixtures : mkdtempSync(join(tmpdir(), 'hs-sock-'))
if (dir !== fixtures) t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0

interface SeenCall { method: string, url: string, host: string | undefined, body: string }

/** A real node:http (or https) server listening on a Unix socket in the test's temporary directory. */
async function socketServer (
  t: tap.Test, handler: (req: IncomingMessage, res: ServerResponse, body: string) => void, server: Server = createHttpServer()
): Promise<{ path: string, seen: SeenCall[], connections: () => number }> {
  const path = join(dir, `s${++n}.sock`)
  const seen: SeenCall[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  server.on('connection', (s: Socket) => { connections++; sockets.add(s); s.once('close', () => sockets.delete(s)) })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, body })
      handler(req, res, body)
    })
  })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { path, seen, connections: () => connections }
}

function json (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function client (t: tap.Test, service: ServiceOptions) {
  const services = createHttpServices({ defaults: { retry: false }, services: { sidecar: service } })
  await services.open()
  t.teardown(async () => await services.close())
  return { services, sidecar: services.client('sidecar') }
}

t.test('calls reach a server on a Unix socket; baseUrl gives the Host header and the base path', async (t) => {
  const s = await socketServer(t, (req, res, body) => json(res, 200, { url: req.url, body }))
  const { sidecar } = await client(t, { baseUrl: 'http://sidecar.local/v1', socketPath: s.path })
  t.same(await sidecar.getJson('/status?x=1'), { url: '/v1/status?x=1', body: '' })
  t.same(await sidecar.postJson('/jobs', { id: 7 }), { url: '/v1/jobs', body: '{"id":7}' })
  t.match(s.seen, [{ method: 'GET', host: 'sidecar.local' }, { method: 'POST', host: 'sidecar.local' }])
})

t.test('the pipeline applies over the socket: a 503 with Retry-After is retried', async (t) => {
  let calls = 0
  const s = await socketServer(t, (_req, res) => {
    if (++calls === 1) {
      res.writeHead(503, { 'retry-after': '0' })
      res.end()
    } else json(res, 200, { ok: true })
  })
  const { sidecar } = await client(t, { baseUrl: 'http://localhost', socketPath: s.path, retry: { attempts: 2, baseDelay: 1, maxDelay: 1 } })
  const res = await sidecar.get('/')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.equal(s.seen.length, 2)
})

t.test('pool limits apply over the socket: connections bounds the sockets opened', async (t) => {
  let active = 0
  let peak = 0
  const s = await socketServer(t, (_req, res) => {
    active++
    peak = Math.max(peak, active)
    setTimeout(() => { active--; json(res, 200, {}) }, 20)
  })
  const { sidecar } = await client(t, { baseUrl: 'http://localhost', socketPath: s.path, connections: 2 })
  await Promise.all(Array.from({ length: 6 }, async () => await (await sidecar.get('/')).text()))
  t.equal(s.connections(), 2)
  t.equal(peak, 2)
})

t.test('https over a Unix socket: the service tls applies and the certificate is checked against the baseUrl host', async (t) => {
  const certs = testCerts()
  const server = createHttpsServer({ key: certs.serverKey, cert: certs.serverCert })
  const s = await socketServer(t, (req, res) => json(res, 200, { encrypted: (req.socket as { encrypted?: boolean }).encrypted === true }), server)
  const { sidecar } = await client(t, { baseUrl: 'https://localhost', socketPath: s.path, tls: { ca: certs.ca } })
  t.same(await sidecar.getJson('/'), { encrypted: true })
  const other = await client(t, { baseUrl: 'https://sidecar.local', socketPath: s.path, tls: { ca: certs.ca } })
  await t.rejects(other.sidecar.get('/'), { code: 'HTTP_SERVICES_ERR_TLS', errno: 'ERR_TLS_CERT_ALTNAME_INVALID' })
})

t.test('a socket path nobody listens on rejects with a 502 ConnectionError', async (t) => {
  const { sidecar, services } = await client(t, { baseUrl: 'http://localhost', socketPath: join(dir, 'nobody.sock') })
  const err = await sidecar.get('/x').then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as ConnectionError)
  t.ok(err instanceof ConnectionError, `a ConnectionError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_CONNECTION', statusCode: 502, errno: 'ENOENT', service: 'sidecar', url: '/x' })
  t.equal(services.stats().sidecar.failures, 1)
})

t.test('socketPath is refused in defaults, with a list of baseUrl, with proxy and with dns', async (t) => {
  const bad = (options: Parameters<typeof createHttpServices>[0]): unknown =>
    t.throws(() => createHttpServices(options), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS' })
  const p = '/run/sidecar.sock'
  t.match(bad({ defaults: { socketPath: p } as never, services: {} }), { key: 'defaults.socketPath', message: /only a service may set it/ })
  t.match(bad({ services: { a: { baseUrl: ['http://a', 'http://b'], socketPath: p } } }), { key: 'services.a.socketPath', message: /list of baseUrl/ })
  t.match(bad({ services: { a: { baseUrl: 'http://a', socketPath: p, proxy: 'http://proxy:3128' } } }), { key: 'services.a.socketPath', message: /proxy/ })
  t.match(bad({ defaults: { dns: true }, services: { a: { baseUrl: 'http://a', socketPath: p } } }), { key: 'services.a.socketPath', message: /dns/ })
  t.match(bad({ services: { a: { baseUrl: 'http://a', socketPath: '' } } }), { key: 'services.a.socketPath', message: /non-empty string/ })
})

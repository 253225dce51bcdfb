import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { createHttpServices, TlsError, type Logger, type ServiceOptions, type TlsOptions } from '../../index'
import { testCerts } from '../helpers/certs'
import { sendJson, startServer, type TestServer } from '../helpers/server'

const certs = testCerts()

/** An https server on 127.0.0.1 that echoes the client certificate it was shown. */
async function httpsServer (t: tap.Test, requireClientCert = false, maxVersion?: 'TLSv1.2'): Promise<TestServer & { httpsUrl: string }> {
  const server: Server = createServer({
    maxVersion,
    key: certs.serverKey,
    cert: certs.serverCert,
    ca: certs.ca,
    requestCert: true,
    rejectUnauthorized: requireClientCert
  })
  const s = await startServer((req, res) => {
    const socket = req.socket as TLSSocket
    const peer = socket.getPeerCertificate()
    sendJson(res, 200, { authorized: socket.authorized, client: peer?.subject?.CN ?? null, protocol: socket.getProtocol() })
  }, server)
  t.teardown(async () => await s.close())
  return { ...s, httpsUrl: `https://127.0.0.1:${s.port}` }
}

async function client (t: tap.Test, baseUrl: string, tls: TlsOptions | undefined, extra: Partial<ServiceOptions> = {}, logger?: Logger) {
  const services = createHttpServices({ logger, defaults: { retry: false }, services: { api: { baseUrl, tls, ...extra } } })
  await services.open()
  t.teardown(async () => await services.close())
  return services.client('api')
}

async function caught (promise: Promise<unknown>): Promise<TlsError> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as TlsError)
}

t.test('a server certificate signed by the configured CA is trusted, and the client certificate is presented', async (t) => {
  const s = await httpsServer(t, true)
  const api = await client(t, s.httpsUrl, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey })
  t.same(await api.getJson('/'), { authorized: true, client: 'http-services test client', protocol: 'TLSv1.3' })
  const byName = await client(t, `https://localhost:${s.port}`, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey })
  t.match(await byName.getJson('/'), { authorized: true }, 'the DNS name in the certificate matches too')
})

t.test('ca, cert and key may be file paths', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'http-services-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, pem: string): string => { const p = join(dir, name); writeFileSync(p, pem); return p }
  const s = await httpsServer(t, true)
  const api = await client(t, s.httpsUrl, { ca: file('ca.pem', certs.ca), cert: file('c.pem', certs.clientCert), key: file('k.pem', certs.clientKey) })
  t.match(await api.getJson('/'), { authorized: true, client: 'http-services test client' })
})

t.test('a certificate from an unknown CA rejects with TlsError (502) before any request is sent', async (t) => {
  const s = await httpsServer(t)
  const api = await client(t, s.httpsUrl, { ca: certs.otherCa })
  const err = await caught(api.get('/secret?token=abc'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_TLS', statusCode: 502, service: 'api', method: 'GET', url: '/secret?token=***' })
  t.match(err.errno, /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN)$/)
  t.equal(s.requests.length, 0, 'the server saw no request')
})

t.test('without a ca the system roots do not trust the test CA: TlsError', async (t) => {
  const s = await httpsServer(t)
  const api = await client(t, s.httpsUrl, undefined)
  await t.rejects(api.get('/'), { code: 'HTTP_SERVICES_ERR_TLS' })
  t.equal(s.requests.length, 0)
})

t.test('a certificate for another host name rejects with TlsError ERR_TLS_CERT_ALTNAME_INVALID', async (t) => {
  const s = await httpsServer(t)
  const api = await client(t, s.httpsUrl, { ca: certs.ca, servername: 'billing.internal' })
  const err = await caught(api.get('/'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_TLS', errno: 'ERR_TLS_CERT_ALTNAME_INVALID', statusCode: 502 })
  t.equal(s.requests.length, 0)
})

t.test('a TLS 1.2 server that requires a client certificate refuses a client without one: TlsError', async (t) => {
  const s = await httpsServer(t, true, 'TLSv1.2')
  const api = await client(t, s.httpsUrl, { ca: certs.ca })
  const err = await caught(api.get('/'))
  t.ok(err instanceof TlsError, `a TlsError (got ${String(err)})`)
  t.match(err, { code: 'HTTP_SERVICES_ERR_TLS', statusCode: 502 })
  t.equal(s.requests.length, 0)
})

t.test('a TLS 1.3 server that requires a client certificate refuses a client without one: a 502 transport error', async (t) => {
  // In TLS 1.3 the server checks the client certificate after the handshake and may just close the connection,
  // so the client can see a closed socket rather than a TLS alert.
  const s = await httpsServer(t, true)
  const api = await client(t, s.httpsUrl, { ca: certs.ca })
  const err = await caught(api.get('/'))
  t.match(err, { code: /^HTTP_SERVICES_ERR_(TLS|CONNECTION)$/, statusCode: 502 })
  t.equal(s.requests.length, 0)
})

t.test('rejectUnauthorized: false logs a warning when the service opens, and then trusts any certificate', async (t) => {
  const warnings: Array<[object, string | undefined]> = []
  // Records each warning with the bindings of the child logger it came from, as pino would print them.
  const make = (bindings: object): Logger => ({
    debug () {},
    info () {},
    error () {},
    warn (obj, msg) { warnings.push([{ ...bindings, ...obj }, msg]) },
    child (b) { return make({ ...bindings, ...b }) }
  })
  const logger = make({})
  const s = await httpsServer(t)
  const services = createHttpServices({ logger, defaults: { retry: false }, services: { api: { baseUrl: s.httpsUrl, tls: { rejectUnauthorized: false } }, safe: { baseUrl: s.httpsUrl, tls: { ca: certs.ca } } } })
  t.equal(warnings.length, 0, 'nothing is logged before open')
  await services.open()
  t.teardown(async () => await services.close())
  t.equal(warnings.length, 1, 'one warning, for the service that turned verification off')
  t.match(warnings[0][0], { service: 'api' })
  t.match(warnings[0][1], /TLS certificate verification is off/)
  t.match(await services.client('api').getJson('/'), { protocol: 'TLSv1.3' })
})

import t from 'tap'
import { checkServices } from '../../lib/check/run'
import type { ServiceOptions } from '../../lib/config/types'
import { proxyUrl } from '../../lib/check/proxy-tunnel'
import { resolveProxy } from '../../lib/config/options/proxy'
import { startProxy } from '../helpers/proxy'
import { closedPort } from '../helpers/server'
import { testCerts } from '../helpers/certs'
import { within } from '../helpers/wait'
import { checkCerts, httpsServer } from './helpers'

t.test("proxy 'env': HTTPS_PROXY for https upstreams, HTTP_PROXY otherwise, lower case first; none set is no proxy", async (t) => {
  const env = resolveProxy('env', 'services.a.proxy', new Map())
  const https = new URL('https://api.test')
  const http = new URL('http://api.test')
  t.equal(proxyUrl(env, https, { HTTPS_PROXY: 'http://secure:1', HTTP_PROXY: 'http://plain:2' })?.host, 'secure:1')
  t.equal(proxyUrl(env, https, { https_proxy: 'http://lower:3', HTTPS_PROXY: 'http://upper:4' })?.host, 'lower:3')
  t.equal(proxyUrl(env, https, { HTTP_PROXY: 'http://plain:2' })?.host, 'plain:2', 'https falls back to HTTP_PROXY, as undici does')
  t.equal(proxyUrl(env, http, { HTTPS_PROXY: 'http://secure:1' }), undefined)
  t.equal(proxyUrl(env, http, { HTTP_PROXY: '' }), undefined, 'an empty value is none')
  t.equal(proxyUrl(env, http, { HTTP_PROXY: 'not a url' }), undefined)
  t.equal(proxyUrl(resolveProxy('http://u:p@proxy:3128', 'k', new Map()), http)?.host, 'proxy:3128')
})

t.test('a proxy token is sent as Proxy-Authorization; a refusal for credentials says so; a hanging CONNECT is bounded', async (t) => {
  const certs = checkCerts()
  const upstream = await httpsServer(t, certs.good, (_req, res) => { res.end('ok') })
  const proxy = await startProxy({ authorization: 'Bearer pr0xy-token' })
  t.teardown(proxy.close)
  const hanging = await startProxy({ hangConnect: true })
  t.teardown(hanging.close)
  const service = (p: string | { uri: string, token: string }): ServiceOptions => ({ baseUrl: `https://127.0.0.1:${upstream.port}`, tls: { ca: certs.ca }, proxy: p })
  const report = await within('the check', checkServices({
    services: {
      token: service({ uri: proxy.url, token: 'Bearer pr0xy-token' }),
      wrong: service({ uri: proxy.url, token: 'Bearer nope-t0ken' }),
      hangs: service(hanging.url)
    }
  }, { timeout: 1500 }), 20_000)
  const tunnel = report.services.map((s) => s.steps.find((x) => x.step === 'proxy'))
  t.match(tunnel[0], { status: 'ok', result: `CONNECT 127.0.0.1:${upstream.port}: tunnel open` })
  t.equal(report.services[0].steps.find((x) => x.step === 'tls')?.status, 'ok', 'TLS through the tunnel')
  t.match(tunnel[1], { status: 'fail', code: 'PROXY_407', result: `proxy answered 407 to CONNECT 127.0.0.1:${upstream.port} (authentication required: check the proxy credentials)` })
  t.match(tunnel[2], { status: 'fail', code: 'ETIMEDOUT', result: `CONNECT 127.0.0.1:${upstream.port} through proxy 127.0.0.1:${hanging.port} timed out after 1500 ms` })
  t.notMatch(JSON.stringify(report), /pr0xy-token|nope-t0ken/, 'no proxy credential in the report')
})

t.test('an https proxy: its own tls options apply to the connection to it', async (t) => {
  const certs = checkCerts()
  const proxyCerts = testCerts()
  const upstream = await httpsServer(t, certs.good, (_req, res) => { res.end('ok') })
  const proxy = await startProxy({ tls: { key: proxyCerts.serverKey, cert: proxyCerts.serverCert } })
  t.teardown(proxy.close)
  const report = await checkServices({
    services: {
      api: { baseUrl: `https://127.0.0.1:${upstream.port}`, tls: { ca: certs.ca }, proxy: { uri: proxy.url, tls: { ca: proxyCerts.ca } }, healthPath: '/' },
      untrusted: { baseUrl: `https://127.0.0.1:${upstream.port}`, tls: { ca: certs.ca }, proxy: proxy.url }
    }
  }, { timeout: 3000 })
  t.same(report.services[0].steps.map((s) => [s.step, s.status]), [['dns', 'ok'], ['tcp', 'ok'], ['proxy', 'ok'], ['tls', 'ok'], ['health', 'ok']],
    JSON.stringify(report.services[0].steps))
  const refused = report.services[1].steps.find((s) => s.step === 'proxy')
  t.match(refused, { status: 'fail', result: `UNABLE_TO_VERIFY_LEAF_SIGNATURE: proxy 127.0.0.1:${proxy.port}` })
})

t.test('a proxy that cannot be reached fails the tcp step, which says it was the proxy', async (t) => {
  const port = await closedPort()
  const report = await checkServices({ services: { api: { baseUrl: 'https://api.test', proxy: `http://127.0.0.1:${port}`, healthPath: '/h' } } }, { timeout: 3000 })
  t.same(report.services[0].steps.map((s) => [s.step, s.status, s.result]), [
    ['dns', 'ok', '127.0.0.1 (an IP address)'],
    ['tcp', 'fail', `ECONNREFUSED 127.0.0.1:${port} (the proxy)`],
    ['health', 'skip', 'not probed: the upstream could not be reached']
  ])
})

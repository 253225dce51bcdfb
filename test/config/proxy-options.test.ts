import { inspect } from 'node:util'
import t from 'tap'
import { resolveOptions } from '../../lib/config/resolve'
import type { HttpServicesOptions, ServiceOptions } from '../../index'

const secret = 'hunter2-p4ss'

function resolveProxy (service: Partial<ServiceOptions>, defaults?: HttpServicesOptions['defaults']) {
  return resolveOptions({ defaults, services: { svc: { baseUrl: 'http://api.test', ...service } } }).services.get('svc')?.proxy
}

function refused (t: tap.Test, options: HttpServicesOptions, key: string, message: RegExp): void {
  const err = t.throws(() => resolveOptions(options), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key }) as Error
  t.match(err?.message, message)
  t.notOk(err?.message.includes(secret), `no secret in: ${err?.message}`)
}

t.test('proxy resolves from a URL, from "env" and from an object; defaults apply and false turns them off', async (t) => {
  t.match(resolveProxy({ proxy: `http://user:${secret}@proxy.corp:3128` }), { display: 'http://proxy.corp:3128', tls: undefined })
  t.equal(resolveProxy({ proxy: `http://user:${secret}@proxy.corp:3128` })?.uri, `http://user:${secret}@proxy.corp:3128`)
  t.match(resolveProxy({ proxy: 'env' }), { display: 'env', uri: 'env' })
  const full = resolveProxy({ proxy: { uri: 'https://proxy.corp', token: `Bearer ${secret}`, headers: { 'X-Tag': 'a' }, tls: { ca: 'PEM -----BEGIN CERTIFICATE-----' } } })
  t.match(full, { display: 'https://proxy.corp', token: `Bearer ${secret}`, headers: { 'x-tag': 'a' }, tls: { rejectUnauthorized: true } })
  t.equal(resolveProxy({}), undefined)
  t.equal(resolveProxy({}, { proxy: 'http://proxy.corp:3128' })?.display, 'http://proxy.corp:3128', 'from defaults')
  t.equal(resolveProxy({ proxy: 'http://other:8080' }, { proxy: 'http://proxy.corp:3128' })?.display, 'http://other:8080', 'a service replaces it')
  t.equal(resolveProxy({ proxy: false }, { proxy: 'http://proxy.corp:3128' }), undefined, 'false turns it off')
  t.notOk('proxy' in (resolveOptions({ services: { a: { baseUrl: 'http://a' } } }).services.get('a') ?? {}), 'no key when unset')
})

t.test('the resolved proxy keeps its secrets out of JSON and inspect', async (t) => {
  const p = resolveProxy({ proxy: { uri: `http://user:${secret}@proxy.corp:3128`, headers: { 'x-key': secret } } })
  const shown = `${JSON.stringify(p)} ${inspect(p, { depth: 5 })}`
  t.notOk(shown.includes(secret), shown)
  t.match(shown, /proxy\.corp:3128/)
  const tokened = resolveProxy({ proxy: { uri: 'http://proxy.corp:3128', token: secret } })
  t.notOk(JSON.stringify(tokened).includes(secret))
})

t.test('bad proxy options are refused with messages that never show credentials', async (t) => {
  const svc = (proxy: unknown, extra: object = {}): HttpServicesOptions =>
    ({ services: { svc: { baseUrl: 'http://api.test', proxy, ...extra } } }) as HttpServicesOptions
  refused(t, svc(`socks5://user:${secret}@proxy:1080`), 'services.svc.proxy', /expected "env" or an http\(s\) proxy URL, got "socks5:\/\/\*\*\*@proxy:1080"/)
  refused(t, svc(`http//user:${secret}@proxy`), 'services.svc.proxy', /\*\*\*@proxy/)
  refused(t, svc(`http://user:${secret}@proxy:3128/path`), 'services.svc.proxy', /without path, query or fragment/)
  refused(t, svc(3128), 'services.svc.proxy', /expected false, "env" or an http\(s\) proxy URL or an object, got 3128/)
  refused(t, svc(true), 'services.svc.proxy', /expected false/)
  refused(t, svc({ token: 'x' }), 'services.svc.proxy.uri', /expected "env" or an http\(s\) proxy URL/)
  refused(t, svc({ uri: 'http://proxy:3128', password: secret }), 'services.svc.proxy.password', /unknown option/)
  refused(t, svc({ uri: 'http://proxy:3128', token: `Bearer ${secret}\r\nx: y` }), 'services.svc.proxy.token', /got "\*\*\*"/)
  refused(t, svc({ uri: 'http://proxy:3128', headers: { 'x-key': `${secret}\n` } }), 'services.svc.proxy.headers.x-key', /got "\*\*\*"/)
  refused(t, svc({ uri: `http://u:${secret}@proxy:3128`, token: 'Bearer x' }), 'services.svc.proxy.token', /either in uri or as token/)
  refused(t, svc({ uri: 'http://proxy:3128', tls: { ca: 'x' } }), 'services.svc.proxy.tls', /https proxy only/)
  refused(t, svc('http://proxy:3128', { baseUrl: ['http://a', 'http://b'] }), 'services.svc.proxy', /list of baseUrl/)
  refused(t, svc('env', { dns: true }), 'services.svc.proxy', /cannot be combined with dns/)
  refused(t, { defaults: { dns: true, proxy: 'http://proxy:3128' }, services: { svc: { baseUrl: 'http://a' } } }, 'services.svc.proxy', /dns: false/)
})

t.test('dns with a list of baseUrl is refused: the dns interceptor would send every call to the first upstream', async (t) => {
  t.throws(() => resolveOptions({ services: { api: { baseUrl: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], dns: true } } }), {
    key: 'services.api.dns',
    message: 'services.api.dns: cannot be combined with a list of baseUrl (set dns: false on this service)'
  })
  const ok = resolveOptions({ defaults: { dns: true }, services: { api: { baseUrl: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], dns: false } } })
  t.equal(ok.services.get('api')?.dns, undefined)
})

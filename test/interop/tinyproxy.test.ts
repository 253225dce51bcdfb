import { inspect } from 'node:util'
import t from 'tap'
import { ConnectionError, createHttpServices, type ServiceOptions } from '../../index'
import { testCerts } from '../helpers/certs'
import { interopBinary, startNginx, startTinyproxy, type Nginx, type Tinyproxy } from '../helpers/interop'
import { withCredentials } from '../helpers/proxy'

// Real tinyproxy (Debian's tinyproxy) in front of real nginx, both on loopback.
const nginxBinary = interopBinary(t, 'nginx', 'nginx-light')
const tinyproxyBinary = interopBinary(t, 'tinyproxy', 'tinyproxy')
const skip = nginxBinary.skip !== false ? nginxBinary.skip : tinyproxyBinary.skip
const certs = testCerts()
const user = 'interop'
const password = 'tiny-s3cret'

let shared: Promise<{ nginx: Nginx, proxy: Tinyproxy }> | undefined
/** One nginx and one tinyproxy (CONNECT allowed to the nginx TLS port only) for the whole file. */
async function servers (): Promise<{ nginx: Nginx, proxy: Tinyproxy }> {
  shared ??= (async () => {
    const nginx = await startNginx(t, nginxBinary.path as string)
    const proxy = await startTinyproxy(t, tinyproxyBinary.path as string, { connectPort: nginx.httpsPort, user, password })
    return { nginx, proxy }
  })()
  return await shared
}

async function client (tt: tap.Test, service: ServiceOptions) {
  const services = createHttpServices({ defaults: { retry: false }, services: { api: service } })
  await services.open()
  tt.teardown(async () => await services.close())
  return services.client('api')
}

async function caught (promise: Promise<unknown>): Promise<ConnectionError> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as ConnectionError)
}

t.test('an https call is tunnelled through tinyproxy (CONNECT, Basic auth) to nginx, HTTP/2 inside the tunnel', { skip }, async (t) => {
  const { nginx, proxy } = await servers()
  const api = await client(t, { baseUrl: nginx.httpsUrl, tls: { ca: certs.ca }, allowH2: true, proxy: withCredentials(proxy.url, user, password) })
  t.same(await api.getJson('/protocol'), { protocol: 'HTTP/2.0' })
  t.same(await api.getJson('/protocol'), { protocol: 'HTTP/2.0' }, 'the tunnel is reused')
})

t.test('a plain http call is forwarded by tinyproxy, which adds its Via header', { skip }, async (t) => {
  const { nginx, proxy } = await servers()
  const api = await client(t, { baseUrl: nginx.httpUrl, proxy: { uri: proxy.url, token: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } })
  t.match(await api.getJson('/protocol'), { protocol: 'HTTP/1.1', via: /tinyproxy/ })
})

t.test('wrong credentials: tinyproxy refuses the CONNECT and the error names it without the password', { skip }, async (t) => {
  const { nginx, proxy } = await servers()
  const api = await client(t, { baseUrl: nginx.httpsUrl, tls: { ca: certs.ca }, proxy: withCredentials(proxy.url, user, `${password}-wrong`) })
  const err = await caught(api.get('/protocol'))
  t.ok(err instanceof ConnectionError, `a ConnectionError (got ${String(err)})`)
  t.match(err, { statusCode: 502, errno: 'ERR_PROXY_AUTH_REQUIRED', message: new RegExp(`proxy 127\\.0\\.0\\.1:${proxy.port} answered 40[17] \\(authentication required\\)`) })
  t.notOk(inspect(err, { depth: 10 }).includes(password), 'no password in the error')
})

t.test('a CONNECT to a port tinyproxy does not allow is refused: ConnectionError with its status', { skip }, async (t) => {
  const { nginx, proxy } = await servers()
  const api = await client(t, { baseUrl: `https://127.0.0.1:${nginx.httpPort}`, proxy: withCredentials(proxy.url, user, password) })
  const err = await caught(api.get('/'))
  t.match(err, { statusCode: 502, errno: 'ERR_PROXY_CONNECT_STATUS', message: new RegExp(`answered 403 to CONNECT 127\\.0\\.0\\.1:${nginx.httpPort}`) })
})

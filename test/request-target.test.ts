import t from 'tap'
import { createHttpServices, ForbiddenUrlError, InvalidRequestError } from '../index'
import { sendJson, startServer } from './helpers/server'

async function setup (t: tap.Test, baseUrl = '') {
  let connections = 0
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url }))
  server.server.on('connection', () => { connections++ })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url + baseUrl } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api'), connections: () => connections }
}

const refused: Array<[string, string, Record<string, string> | undefined]> = [
  ['an absolute URL to another origin', 'http://169.254.169.254/latest/meta-data', undefined],
  ['an absolute https URL', 'https://evil.example/x', undefined],
  ['another scheme', 'file:///etc/passwd', undefined],
  ['a protocol-relative //host path', '//evil.example/x', undefined],
  ['a path without a leading slash', 'evil.example/x', undefined],
  ['a backslash path', '/\\evil.example/x', undefined],
  ['a double backslash', '\\\\evil.example', undefined],
  ['a raw dot-dot segment', '/v1/../admin', undefined],
  ['a trailing dot-dot segment', '/v1/..', undefined],
  ['a single dot segment', '/./admin', undefined],
  ['a dot-dot segment before the query', '/a/..?x=1', undefined],
  ['an encoded dot-dot segment', '/v1/%2e%2e/admin', undefined],
  ['an upper-case encoded dot-dot segment', '/v1/%2E%2E/admin', undefined],
  ['a half-encoded dot-dot segment', '/v1/.%2e/admin', undefined],
  ['a dot-dot segment ended by an encoded slash', '/v1/..%2fadmin', undefined],
  ['a dot-dot segment after an encoded slash', '/v1/x%2F..%2F..%2Fadmin', undefined],
  ['a dot-dot segment with an encoded backslash', '/v1/..%5cadmin', undefined],
  ['a dot-dot segment with a path parameter (Tomcat ..;)', '/v1/..;/admin', undefined],
  ['a NUL byte', '/a\u0000b', undefined],
  ['a CR/LF in the path (request splitting)', '/a\r\nHost: evil', undefined],
  ['a param that is ".."', '/files/:name', { name: '..' }],
  ['a param that is "."', '/files/:name', { name: '.' }],
  ['an empty param', '/files/:name/x', { name: '' }],
  ['a param that climbs with slashes', '/files/:name', { name: '../../admin' }],
  ['an overlong 2-byte UTF-8 dot-dot (%c0%ae)', '/v1/%c0%ae%c0%ae/admin', undefined],
  ['an overlong 3-byte UTF-8 dot-dot (%e0%80%ae)', '/v1/%e0%80%ae%e0%80%ae/admin', undefined],
  ['an overlong 4-byte UTF-8 dot (%f0%80%80%ae)', '/v1/.%f0%80%80%ae/admin', undefined],
  ['an overlong dot-dot in mixed case and forms', '/v1/%C0%AE%E0%80%Ae/admin', undefined],
  ['an overlong dot-dot after an overlong slash', '/v1/x%c0%af..%c0%afadmin', undefined],
  ['a dot-dot after an overlong backslash', '/v1/x%c1%9c..%c1%9cadmin', undefined],
  ['a dot-dot with an encoded path parameter (..%3b)', '/v1/..%3b/admin', undefined],
  ['a dot with an encoded path parameter (.%3b)', '/v1/.%3B/admin', undefined],
  ['an encoded dot-dot with a path parameter (%2e%2e;)', '/v1/%2e%2e;/admin', undefined],
  ['an IIS %u002e dot-dot', '/v1/%u002e%U002E/admin', undefined],
  ['a double-encoded dot-dot (%252e)', '/v1/%252e%252e/admin', undefined],
  ['a double-encoded dot-dot with double-encoded slashes', '/v1/x%252f..%252fadmin', undefined],
  ['a param holding an encoded dot-dot (double-encoded on the wire)', '/files/:name', { name: '%2e%2e' }]
]

for (const [what, path, params] of refused) {
  t.test(`refuses ${what} with ForbiddenUrlError before any connection`, async (t) => {
    const { api, server, connections } = await setup(t, '/v1')
    const err = await api.get(path, params !== undefined ? { params } : undefined).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof ForbiddenUrlError, `${JSON.stringify(path)} refused`)
    t.match(err, { code: 'HTTP_SERVICES_ERR_FORBIDDEN_URL', service: 'api', statusCode: 500 })
    t.equal(server.requests.length, 0, 'the server saw no request')
    t.equal(connections(), 0, 'no connection was opened')
  })
}

t.test('every verb and helper refuses an absolute URL by rejecting its promise, never by throwing', async (t) => {
  const { api, connections } = await setup(t)
  const url = 'http://evil.example/'
  const calls = [
    () => api.get(url), () => api.head(url), () => api.options(url), () => api.delete(url), () => api.post(url),
    () => api.put(url), () => api.patch(url), () => api.request('GET', url), () => api.stream('GET', url),
    () => api.getJson(url), () => api.postJson(url, {}), () => api.putJson(url, {}), () => api.patchJson(url, {}),
    () => api.deleteJson(url)
  ]
  for (const call of calls) {
    let promise: Promise<unknown> | undefined
    t.doesNotThrow(() => { promise = call() })
    await t.rejects(promise as Promise<unknown>, ForbiddenUrlError)
  }
  t.equal(connections(), 0)
})

t.test('allows paths that only look suspicious', async (t) => {
  const { api, server } = await setup(t, '/v1')
  const ok = ['/files/a..b', '/files/..hidden', '/files/.well-known/x', '/a.b/c', '/users/me:batchGet', '/@user', '/a/%2e%2ex',
    '/files/...', '/a/%c0%aex', '/a/%252e%252ex', '/a;v=1/b', '/files/x.%3b']
  for (const path of ok) {
    const got = await api.getJson<{ url: string }>(path)
    t.equal(got.url, '/v1' + path, `${path} passes`)
  }
  const slash = await api.getJson<{ url: string }>('/files/:name', { params: { name: 'a/b' } })
  t.equal(slash.url, '/v1/files/a%2Fb', 'a param slash is encoded, not a separator')
  t.equal(server.requests.length, ok.length + 1)
})

t.test('a non-string path rejects with InvalidRequestError', async (t) => {
  const { api } = await setup(t)
  await t.rejects(api.get(undefined as unknown as string), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
  await t.rejects(api.get(new URL('http://x/') as unknown as string), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
})

const surrogates: Array<[string, () => Record<string, unknown>, RegExp]> = [
  ['a params value', () => ({ params: { id: 'a\ud800' } }), /^api: params\.id holds a lone surrogate/],
  ['a query value', () => ({ query: { q: 'x\udfff' } }), /^api: query "q" holds a lone surrogate/],
  ['a query value in a list', () => ({ query: { q: ['ok', '\ud83d'] } }), /^api: query "q" holds a lone surrogate/],
  ['a query key', () => ({ query: { ['k\udc00']: 'v' } }), /^api: query "k\\udc00" holds a lone surrogate/],
  ['a form value', () => ({ form: { f: '\ud800x' } }), /^api: form "f" holds a lone surrogate/]
]

for (const [what, options, message] of surrogates) {
  t.test(`a lone surrogate in ${what} rejects with InvalidRequestError, not a URIError`, async (t) => {
    const { api, connections } = await setup(t)
    const err = await api.post('/items/:id', { params: { id: '7' }, ...options() }).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof InvalidRequestError, 'an InvalidRequestError')
    t.match(err, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', service: 'api', method: 'POST', message })
    t.ok((err as Error).cause instanceof URIError, 'the URIError is its cause')
    t.equal(connections(), 0, 'no connection was opened')
  })
}

t.test('a well-formed surrogate pair (an emoji) is encoded as UTF-8; half of one is refused', async (t) => {
  const { api } = await setup(t)
  const got = await api.getJson<{ url: string }>('/items/:id', { params: { id: '\ud83d\ude00' }, query: { q: '\ud83d\ude00' } })
  t.equal(got.url, '/items/%F0%9F%98%80?q=%F0%9F%98%80')
  await t.rejects(api.getJson('/items/:id', { params: { id: '\ud83d' } }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
})

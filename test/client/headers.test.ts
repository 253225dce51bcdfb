import t from 'tap'
import { createHttpServices, InvalidRequestError } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test, headers?: Record<string, string>) {
  let connections = 0
  const server = await startServer((_req, res, seen) => sendJson(res, 200, seen.headers))
  server.server.on('connection', () => { connections++ })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url, headers } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api'), connections: () => connections }
}

t.test('service headers are sent on every call; call headers override them case-insensitively; undefined is dropped', async (t) => {
  const { api } = await setup(t, { 'User-Agent': 'billing-client/1.0', 'X-Tenant': 'acme' })
  const plain = await api.getJson<Record<string, string>>('/')
  t.equal(plain['user-agent'], 'billing-client/1.0')
  t.equal(plain['x-tenant'], 'acme')
  const over = await api.getJson<Record<string, string>>('/', { headers: { 'x-TENANT': 'other', 'X-Count': 3, 'x-gone': undefined } })
  t.equal(over['x-tenant'], 'other')
  t.equal(over['x-count'], '3')
  t.notOk('x-gone' in over)
  const again = await api.getJson<Record<string, string>>('/')
  t.equal(again['x-tenant'], 'acme', 'a call\'s headers never leak into the service defaults')
})

const injections: Array<[string, Record<string, string>]> = [
  ['a CR LF in a value (header injection)', { 'x-a': 'v\r\nSet-Cookie: admin=1' }],
  ['a bare LF in a value', { 'x-a': 'v\nx-b: 1' }],
  ['a bare CR in a value', { 'x-a': 'v\rx' }],
  ['a NUL in a value', { 'x-a': 'v\u0000' }],
  ['another control character in a value', { 'x-a': 'v\u0001' }],
  ['a DEL in a value', { 'x-a': 'v\u007f' }],
  ['a character above U+00FF in a value', { 'x-a': 'v\u2028' }],
  ['a name with a space', { 'x a': 'v' }],
  ['a name with a colon', { 'x-a:': 'v' }],
  ['a name with CR LF', { 'x-a\r\nx-b': 'v' }],
  ['an empty name', { '': 'v' }],
  ['transfer-encoding set by the caller', { 'transfer-encoding': 'chunked' }],
  ['upgrade set by the caller', { upgrade: 'websocket' }],
  ['expect set by the caller', { expect: '100-continue' }]
]

for (const [what, headers] of injections) {
  t.test(`refuses ${what} with InvalidRequestError, before anything is sent`, async (t) => {
    const { api, server } = await setup(t)
    const err = await api.get('/orders?token=x', { headers }).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof InvalidRequestError, 'an InvalidRequestError')
    t.match(err, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', service: 'api', method: 'GET', url: '/orders?token=***', statusCode: 500 })
    t.equal(server.requests.length, 0, 'the server saw no request')
  })
}

t.test('every client method rejects bad input instead of throwing synchronously', async (t) => {
  const { api, connections } = await setup(t)
  const bad = { headers: { 'x-a': 'a\r\nb' } }
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['request', () => api.request('GET', '/', bad)],
    ['get', () => api.get('/', bad)],
    ['head', () => api.head('/', bad)],
    ['options', () => api.options('/', bad)],
    ['delete', () => api.delete('/', bad)],
    ['post', () => api.post('/', bad)],
    ['put', () => api.put('/', bad)],
    ['patch', () => api.patch('/', bad)],
    ['stream', () => api.stream('GET', '/', bad)],
    ['getJson', () => api.getJson('/', bad)],
    ['postJson', () => api.postJson('/', {}, bad)],
    ['putJson', () => api.putJson('/', {}, bad)],
    ['patchJson', () => api.patchJson('/', {}, bad)],
    ['deleteJson', () => api.deleteJson('/', bad)],
    ['request with a bad method', () => api.request('BREW', '/')],
    ['request with bad options', () => api.request('GET', '/', { signal: 'nope' as unknown as AbortSignal })],
    ['request with a non-string path', () => api.get(42 as unknown as string)]
  ]
  for (const [name, call] of calls) {
    let promise: Promise<unknown> | undefined
    t.doesNotThrow(() => { promise = call() }, `${name} does not throw`)
    t.ok(promise instanceof Promise, `${name} returns a promise`)
    await t.rejects(promise as Promise<unknown>, InvalidRequestError, `${name} rejects`)
  }
  t.equal(connections(), 0, 'no connection was opened')
})

t.test('Latin-1 header values and tabs are sent as they are', async (t) => {
  const { api } = await setup(t)
  const got = await api.getJson<Record<string, string>>('/', { headers: { 'x-a': 'caf\u00e9', 'x-b': 'a\tb' } })
  t.equal(got['x-a'], 'caf\u00e9')
  t.equal(got['x-b'], 'a\tb')
})

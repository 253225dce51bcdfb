import { Readable } from 'node:stream'
import t from 'tap'
import { createHttpServices, InvalidRequestError, type HttpServicesOptions } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test, api: Record<string, unknown> = {}) {
  let connections = 0
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { headers: seen.headers, body: seen.body }))
  server.server.on('connection', () => { connections++ })
  const options = { defaults: { retry: false }, services: { api: { baseUrl: server.url, ...api } } } as HttpServicesOptions
  const services = createHttpServices(options)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api'), connections: () => connections }
}

/** The call's outcome, or a failure naming the call if it has not settled within `ms` (never tap's timeout). */
async function settle (promise: Promise<unknown>, what: string, ms = 10_000): Promise<{ value?: unknown, error?: unknown }> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), late])
  } finally {
    clearTimeout(timer)
  }
}

t.test('an unknown call option (a typo) rejects with InvalidRequestError and a "did you mean", on every verb and helper', async (t) => {
  const { api, connections } = await setup(t)
  const bad = { qurey: { a: 1 } } as unknown as Record<string, never>
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
    ['postJson', () => api.postJson('/', { a: 1 }, bad)],
    ['putJson', () => api.putJson('/', undefined, bad)],
    ['patchJson', () => api.patchJson('/', {}, bad)],
    ['deleteJson', () => api.deleteJson('/', bad)]
  ]
  for (const [name, call] of calls) {
    let promise: Promise<unknown> | undefined
    t.doesNotThrow(() => { promise = call() }, `${name} does not throw`)
    const { error } = await settle(promise as Promise<unknown>, name)
    t.ok(error instanceof InvalidRequestError, `${name} rejects with InvalidRequestError`)
    t.match(error, {
      code: 'HTTP_SERVICES_ERR_INVALID_REQUEST',
      service: 'api',
      message: 'api: unknown call option "qurey" (did you mean "query"?)'
    }, name)
  }
  t.equal(connections(), 0, 'nothing was sent')
})

t.test('an unknown call option far from every name lists the known ones; a service option says where it belongs', async (t) => {
  const { api } = await setup(t)
  const far = await settle(api.get('/', { logger: console } as never), 'far')
  t.match(far.error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /^api: unknown call option "logger" \(expected one of: query, params, headers, .*decompress, token, auth\)$/ })
  const service = await settle(api.get('/', { connections: 4 } as never), 'service option')
  t.match(service.error, { message: 'api: unknown call option "connections" (a service option: set it in the service\'s options, not per call)' })
  const undef = await settle(api.get('/', { qurey: undefined } as never), 'undefined value')
  t.match(undef.error, { message: /unknown call option "qurey"/ }, 'a typo is refused even when its value is undefined')
  const notObject = await settle(api.get('/', 'query=1' as never), 'string options')
  t.match(notObject.error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: 'api: call options must be an object, got "query=1"' })
})

t.test('every known call option still passes, and so does the body the *Json helpers add; a typo beside them does not', async (t) => {
  const { api } = await setup(t)
  const ac = new AbortController()
  const all = {
    query: { a: 1 },
    params: { id: 7 },
    headers: { 'x-a': 'b' },
    timeout: { total: 5000 },
    signal: ac.signal,
    throwHttpErrors: true,
    retry: false as const,
    fallback: () => { throw new Error('not used') },
    decompress: true
  }
  const got = await settle(api.getJson<{ headers: Record<string, string> }>('/items/:id', all), 'all options')
  t.equal(got.error, undefined, 'no error')
  t.equal((got.value as { headers: Record<string, string> }).headers['x-a'], 'b')
  for (const body of [{ json: 1 }, { form: { a: 1 } }, { body: 'x' }, { multipart: { a: '1' } }]) {
    const r = await settle(api.post('/', body).then(async (res) => res.json()), Object.keys(body)[0])
    t.equal(r.error, undefined, `${Object.keys(body)[0]} passes`)
  }
  const posted = await settle(api.postJson<{ body: string }>('/', { a: 1 }, { headers: { 'x-a': 'b' } }), 'postJson')
  t.equal((posted.value as { body: string }).body, '{"a":1}')
  const typo = await settle(api.getJson('/items/:id', { ...all, parmas: { id: 7 } } as never), 'typo')
  t.match(typo.error, { message: 'api: unknown call option "parmas" (did you mean "params"?)' })
})

t.test('a call cannot set Host: it rejects with InvalidRequestError naming the header, before anything is sent', async (t) => {
  const { api, server, connections } = await setup(t)
  for (const name of ['host', 'Host', 'HOST']) {
    const { error } = await settle(api.getJson('/', { headers: { [name]: 'evil.example' } }), name)
    t.ok(error instanceof InvalidRequestError, `${name} refused`)
    t.match(error, { service: 'api', method: 'GET', message: 'api: header host cannot be set per call (set it in the service\'s headers)' })
  }
  t.equal(server.requests.length, 0)
  t.equal(connections(), 0)
})

t.test('a service may set Host in its configured headers; a call still may not override it', async (t) => {
  const { api } = await setup(t, { headers: { Host: 'billing.internal' } })
  const got = await settle(api.getJson<{ headers: Record<string, string> }>('/'), 'get')
  t.equal((got.value as { headers: Record<string, string> }).headers.host, 'billing.internal')
  const over = await settle(api.getJson('/', { headers: { host: 'evil.example' } }), 'override')
  t.match(over.error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /header host cannot be set per call/ })
})

const mismatches: Array<[string, Record<string, unknown>, string]> = [
  ['a body shorter than its content-length', { body: 'abc', headers: { 'content-length': '10' } }, 'api: header content-length is 10 but the body has 3 bytes'],
  ['a body longer than its content-length', { body: Buffer.from('abcdefghij'), headers: { 'Content-Length': 3 } }, 'api: header content-length is 3 but the body has 10 bytes'],
  ['a json body with a wrong content-length', { json: { a: 'é' }, headers: { 'content-length': '3' } }, 'api: header content-length is 3 but the body has 10 bytes'],
  ['a content-length without a body', { headers: { 'content-length': '10' } }, 'api: header content-length is 10 but the body has 0 bytes'],
  ['a content-length that is not a number', { body: 'abc', headers: { 'content-length': '3x' } }, 'api: header content-length must be a number of bytes, got "3x"']
]

for (const [what, options, message] of mismatches) {
  t.test(`${what} rejects with InvalidRequestError before anything is sent, and is never retried`, async (t) => {
    const { api, server, connections } = await setup(t, { retry: { attempts: 3, baseDelay: 1 } })
    const { error } = await settle(api.put('/x', options), what)
    t.ok(error instanceof InvalidRequestError, 'an InvalidRequestError')
    t.match(error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', service: 'api', method: 'PUT', message })
    t.equal(server.requests.length, 0)
    t.equal(connections(), 0)
  })
}

t.test('a matching content-length is sent as given (0 without a body too); one byte off is refused', async (t) => {
  const { api } = await setup(t)
  const off = await settle(api.put('/x', { body: 'é', headers: { 'content-length': '1' } }), 'one byte off')
  t.match(off.error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: 'api: header content-length is 1 but the body has 2 bytes' })
  const got = await settle(api.put('/x', { body: 'é', headers: { 'content-length': '2' } }).then(async (res) => res.json()), 'put')
  t.match(got.value, { body: 'é', headers: { 'content-length': '2' } })
  const empty = await settle(api.post('/x', { headers: { 'content-length': '0' } }).then(async (res) => res.json()), 'post')
  t.match(empty.value, { body: '', headers: { 'content-length': '0' } })
})

for (const [what, chunks, length] of [['shorter', ['ab', 'c'], '10'], ['longer', ['abcdef', 'ghij'], '3']] as const) {
  t.test(`a stream body ${what} than its content-length is the caller's InvalidRequestError: the breaker does not count it`, async (t) => {
    const { api, services } = await setup(t, { breaker: { minimumRequests: 1, errorPercentage: 1 } })
    for (let i = 0; i < 3; i++) {
      const body = Readable.from(chunks.map((c) => Buffer.from(c)))
      const { error } = await settle(api.post('/x', { body, headers: { 'content-length': length } }), `stream ${i}`)
      t.ok(error instanceof InvalidRequestError, `call ${i}: an InvalidRequestError`)
      t.match(error, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', service: 'api', method: 'POST', message: /content-length/ })
    }
    const stats = services.stats().api as { breaker?: { state: string, failures: number } }
    t.match(stats.breaker, { state: 'closed', failures: 0 }, 'the breaker counted no failure')
    const after = await settle(api.getJson('/'), 'a later call')
    t.equal(after.error, undefined, 'a later call goes through')
  })
}

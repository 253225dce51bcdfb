import t from 'tap'
import { AuthError, createHttpServices, type HttpServicesOptions, type ServiceOptions } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'

/** A server that answers every request with 200, and the registry of `services` (each on that server). */
async function setup (t: tap.Test, services: Record<string, Partial<ServiceOptions>>, rest: HttpServicesOptions = {}) {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const options: HttpServicesOptions = {
    ...rest,
    defaults: { retry: false, ...rest.defaults },
    services: Object.fromEntries(Object.entries(services).map(([name, o]) => [name, { baseUrl: server.url, ...o }]))
  }
  const registry = createHttpServices(options)
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close() })
  return { server, registry }
}

function last (server: TestServer) {
  return server.requests[server.requests.length - 1]
}

t.test('a fixed bearer token is sent as Authorization: Bearer', async (t) => {
  const { server, registry } = await setup(t, { api: { auth: { bearer: 's3cr3t-bearer' } } })
  await registry.client('api').get('/a')
  t.equal(last(server).headers.authorization, 'Bearer s3cr3t-bearer')
  t.same(registry.stats().api.policies.includes('auth'), false, 'a fixed header needs no policy: it is among the service\'s headers from start-up')
})

t.test('a bearer function is called before each attempt, and its token sent', async (t) => {
  let n = 0
  let answers = 0
  const server = await startServer((_req, res) => sendJson(res, ++answers === 1 ? 503 : 200, {}))
  const registry = createHttpServices({
    services: { api: { baseUrl: server.url, retry: { attempts: 2, baseDelay: 1 }, auth: { bearer: async () => `tok-${++n}` } } }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close() })
  await registry.client('api').get('/a')
  t.same(server.requests.map((r) => r.headers.authorization), ['Bearer tok-1', 'Bearer tok-2'])
})

t.test('a bearer function that throws or gives no token fails the call with AuthError (502), without a request', async (t) => {
  const boom = new Error('idp down')
  const { server, registry } = await setup(t, {
    throws: { auth: { bearer: () => { throw boom } } },
    empty: { auth: { bearer: async () => '' } },
    newline: { auth: { bearer: () => 'a\r\nx-injected: 1' } }
  })
  const thrown = await registry.client('throws').get('/x').catch((e: unknown) => e) as AuthError
  t.ok(thrown instanceof AuthError)
  t.match(thrown, { code: 'HTTP_SERVICES_ERR_AUTH', statusCode: 502, service: 'throws', method: 'GET', url: '/x', message: 'throws: the auth.bearer function failed' })
  t.equal(thrown.cause, boom, 'the function\'s error is the cause')
  await t.rejects(registry.client('empty').get('/x'), { code: 'HTTP_SERVICES_ERR_AUTH', message: /gave no usable token/ })
  await t.rejects(registry.client('newline').get('/x'), { code: 'HTTP_SERVICES_ERR_AUTH' })
  t.equal(server.requests.length, 0, 'nothing was sent')
})

t.test('an API key goes in x-api-key by default, or in the header named', async (t) => {
  const { server, registry } = await setup(t, {
    plain: { auth: { apiKey: { value: 'k-123' } } },
    named: { auth: { apiKey: { value: 'k-456', header: 'X-Key' } } }
  })
  await registry.client('plain').get('/a')
  t.equal(last(server).headers['x-api-key'], 'k-123')
  t.equal(last(server).headers.authorization, undefined)
  await registry.client('named').get('/a')
  t.equal(last(server).headers['x-key'], 'k-456')
  t.equal(last(server).headers['x-api-key'], undefined)
})

t.test('an API key in the query is appended to each attempt\'s path, once, after the call\'s own query', async (t) => {
  let answers = 0
  const server = await startServer((_req, res) => sendJson(res, ++answers === 1 ? 503 : 200, {}))
  const registry = createHttpServices({
    services: { api: { baseUrl: `${server.url}/v1`, retry: { attempts: 2, baseDelay: 1 }, auth: { apiKey: { value: 'k &=1', query: 'api_key' } } } }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close() })
  await registry.client('api').get('/items', { query: { q: 'x' } })
  t.same(server.requests.map((r) => r.url), ['/v1/items?q=x&api_key=k%20%26%3D1', '/v1/items?q=x&api_key=k%20%26%3D1'])
  await registry.client('api').get('/plain')
  t.equal(server.requests[2].url, '/v1/plain?api_key=k%20%26%3D1')
  await registry.client('api').get('/own', { query: { api_key: 'mine' } })
  t.equal(server.requests[3].url, '/v1/own?api_key=mine', 'the call\'s own parameter wins')
})

t.test('basic auth is base64 of username:password (UTF-8)', async (t) => {
  const { server, registry } = await setup(t, { api: { auth: { basic: { username: 'ünï', password: 'p:ss wörd' } } } })
  await registry.client('api').get('/a')
  t.equal(last(server).headers.authorization, `Basic ${Buffer.from('ünï:p:ss wörd').toString('base64')}`)
})

t.test('defaults.auth applies to every service; a service\'s auth replaces it and auth: false turns it off', async (t) => {
  const { server, registry } = await setup(t, {
    inherits: {},
    own: { auth: { apiKey: { value: 'own-key' } } },
    none: { auth: false }
  }, { defaults: { auth: { bearer: 'shared-token' } } })
  await registry.client('inherits').get('/')
  t.equal(last(server).headers.authorization, 'Bearer shared-token')
  await registry.client('own').get('/')
  t.equal(last(server).headers.authorization, undefined, 'replaced, not merged')
  t.equal(last(server).headers['x-api-key'], 'own-key')
  await registry.client('none').get('/')
  t.equal(last(server).headers.authorization, undefined)
  t.notOk(registry.stats().none.policies.includes('auth'), 'no auth policy in its chain')
})

t.test('a service without auth has no auth policy in its chain', async (t) => {
  const { registry } = await setup(t, { api: {} })
  t.notOk(registry.stats().api.policies.includes('auth'))
})

t.test('a header the call sets itself wins over the service\'s scheme', async (t) => {
  const { server, registry } = await setup(t, {
    bearer: { auth: { bearer: 'svc' } },
    fn: { auth: { bearer: () => 'svc-fn' } },
    key: { auth: { apiKey: { value: 'svc-key' } } }
  })
  await registry.client('bearer').get('/', { headers: { Authorization: 'Custom mine' } })
  t.equal(last(server).headers.authorization, 'Custom mine')
  await registry.client('fn').get('/', { headers: { authorization: 'Custom mine2' } })
  t.equal(last(server).headers.authorization, 'Custom mine2')
  await registry.client('key').get('/', { headers: { 'X-API-KEY': 'mine3', other: undefined } })
  t.equal(last(server).headers['x-api-key'], 'mine3')
  await registry.client('key').get('/', { headers: { other: 'x' } })
  t.equal(last(server).headers['x-api-key'], 'svc-key', 'other headers do not stop it')
})

t.test('the scheme is sent on every attempt of a hedged call', async (t) => {
  // The first attempt is answered late, so the hedge really goes out before it.
  let n = 0
  const server = await startServer(async (_req, res) => {
    if (++n === 1) await new Promise((resolve) => setTimeout(resolve, 200))
    sendJson(res, 200, {})
  })
  const registry = createHttpServices({
    defaults: { retry: false, hedge: { delay: 20, maxHedges: 1 } },
    services: { api: { baseUrl: server.url, auth: { bearer: 'h-tok' } }, fn: { baseUrl: server.url, auth: { bearer: () => 'h-fn' } } }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close() })
  await registry.client('api').get('/')
  t.equal(server.requests.length, 2, 'the call was hedged')
  n = 0
  await registry.client('fn').get('/')
  t.same(server.requests.map((r) => r.headers.authorization), ['Bearer h-tok', 'Bearer h-tok', 'Bearer h-fn', 'Bearer h-fn'])
})

t.test('a bearer function that never settles does not hold a call past its total timeout', async (t) => {
  const { server, registry } = await setup(t, { api: { auth: { bearer: () => new Promise<string>(() => {}) }, timeout: 100 } })
  // Raced against a timer: a regression fails here, not by hanging until tap's own timeout.
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([
    registry.client('api').get('/').then(() => 'answered', (err: unknown) => err),
    new Promise((resolve) => { timer = setTimeout(() => resolve('still waiting after 1 s'), 1000) })
  ])
  clearTimeout(timer)
  t.match(outcome, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
  t.equal(server.requests.length, 0)
})

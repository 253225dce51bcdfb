import t, { type Test } from 'tap'
import Fastify from 'fastify'
import httpServices, { ConnectionError, createHttpServices, type HttpServicesOptions } from '../../index'
import { MockUnmatchedError, mockHttpServices, networkError, type MockHttpServices } from '../../testing'


/** A registry of `services` whose calls all go to a fresh mock set; both closed at the end of the test. */
async function withMocks (t: Test, services: HttpServicesOptions['services'], extra: HttpServicesOptions = {}): Promise<{ mocks: MockHttpServices, registry: ReturnType<typeof createHttpServices> }> {
  const mocks = mockHttpServices()
  const registry = createHttpServices({ ...extra, services, dispatcher: mocks.dispatcher })
  await registry.open()
  t.teardown(async () => {
    await registry.close()
    await mocks.close()
  })
  return { mocks, registry }
}

t.test('intercepts by service name and answers with JSON, text, a Buffer and headers', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    users: { baseUrl: 'http://users.test' },
    billing: { baseUrl: 'https://billing.test:8443' }
  })
  mocks.service('users').intercept({ path: '/users/7' }).reply(200, { id: 7, name: 'Ada' }, { headers: { etag: '"v1"' } })
  mocks.service('billing').intercept({ method: 'GET', path: '/health' }).reply(200, 'up')
  mocks.service('billing').intercept({ path: '/pdf/1' }).reply(200, Buffer.from([1, 2, 3]), { headers: { 'content-type': 'application/pdf' } })

  const user = await registry.client('users').get('/users/7')
  t.equal(user.status, 200)
  t.equal(user.headers['content-type'], 'application/json', 'an object reply is sent as JSON, like a real server would')
  t.equal(user.headers.etag, '"v1"')
  t.same(await user.json(), { id: 7, name: 'Ada' })
  t.equal(await registry.client('billing').get('/health').then(async (r) => await r.text()), 'up')
  const pdf = await registry.client('billing').get('/pdf/1')
  t.equal(pdf.headers['content-type'], 'application/pdf')
  t.same([...Buffer.from(await pdf.arrayBuffer())], [1, 2, 3])
  t.equal(pdf.url, 'https://billing.test:8443/pdf/1')
  mocks.assertAllCalled()
})

t.test('paths are relative to the base path; query, headers and JSON bodies must match', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    billing: { baseUrl: 'http://billing.test/api/v1', headers: { 'x-tenant': 'acme' } }
  })
  const billing = mocks.service('billing')
  billing.intercept({ path: '/invoices', query: { user: '7', page: '2' } }).reply(200, [{ id: 1 }])
  billing.intercept({ method: 'POST', path: '/charges', headers: { 'x-tenant': 'acme' }, body: { amount: 10, currency: 'EUR' } }).reply(201, { id: 'ch_1' })
  billing.intercept({ method: 'PUT', path: /^\/invoices\/\d+$/ }).reply(204)

  const client = registry.client('billing')
  t.same(await client.getJson('/invoices', { query: { page: 2, user: 7 } }), [{ id: 1 }], 'query in another order still matches')
  t.same(await client.postJson('/charges', { currency: 'EUR', amount: 10 }), { id: 'ch_1' }, 'a JSON body matches by value')
  t.equal((await client.put('/invoices/42')).status, 204, 'a RegExp path is matched against the relative path')

  const calls = billing.calls()
  t.equal(calls.length, 3)
  t.match(calls[0], { service: 'billing', method: 'GET', path: '/invoices', query: { page: '2', user: '7' }, body: undefined })
  t.equal(calls[0].url, 'http://billing.test/api/v1/invoices?page=2&user=7')
  t.match(calls[1], { method: 'POST', path: '/charges', headers: { 'x-tenant': 'acme', 'content-type': 'application/json' } })
  t.same(calls[1].json(), { currency: 'EUR', amount: 10 })
  t.equal(billing.lastCall()?.path, '/invoices/42')
})

t.test('a query must match exactly, and a body that differs is not matched', async (t) => {
  const { mocks, registry } = await withMocks(t, { billing: { baseUrl: 'http://billing.test' } })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [])
  mocks.service('billing').intercept({ method: 'POST', path: '/charges', body: { amount: 10 } }).reply(201, {})
  const client = registry.client('billing')
  await t.rejects(client.get('/invoices', { query: { user: 8 } }), MockUnmatchedError)
  await t.rejects(client.post('/charges', { json: { amount: 11 } }), { code: 'HTTP_SERVICES_ERR_MOCK_UNMATCHED', message: /body/ })
  t.equal(mocks.pending('billing').length, 2, 'both interceptors still wait')
})

t.test('raw and text bodies match as text; default headers and content-length can be added', async (t) => {
  const { mocks, registry } = await withMocks(t, { files: { baseUrl: 'http://files.test', retry: false } })
  const files = mocks.service('files')
  files.intercept({ method: 'PUT', path: '/a', body: 'hello' }).defaultReplyHeaders({ 'x-stored': 'yes' }).replyContentLength().reply(201, { ok: true })
  files.intercept({ method: 'PUT', path: '/b', body: /^bin/ }).reply(204)
  files.intercept({ method: 'PUT', path: '/c', body: { a: 1 } }).reply(204)

  const a = await registry.client('files').put('/a', { body: Buffer.from('hello') })
  t.equal(a.headers['x-stored'], 'yes')
  t.equal(a.headers['content-length'], String(Buffer.byteLength('{"ok":true}')))
  t.equal((await registry.client('files').put('/b', { body: new Uint8Array(Buffer.from('binary')) })).status, 204)
  await t.rejects(registry.client('files').put('/c', { body: 'not json' }), MockUnmatchedError, 'a body that is not JSON never equals a JSON value')
  t.same(files.pending().map((p) => p.path), ['/c'])
  t.same(files.calls().map((c) => c.body), ['hello', 'binary', 'not json'])
})

t.test('a callback reply answers each call from the call itself', async (t) => {
  const { mocks, registry } = await withMocks(t, { catalog: { baseUrl: 'http://catalog.test/v2' } })
  mocks.service('catalog').intercept({ path: (p) => p.startsWith('/items') }).reply((call) => {
    const page = Number(call.query.page ?? '1')
    return { statusCode: 200, data: { page, path: call.path, items: page === 1 ? ['a', 'b'] : ['c'], next: page === 1 ? 2 : null } }
  }).persist()

  const client = registry.client('catalog')
  const first = await client.getJson<{ page: number, path: string, items: string[], next: number | null }>('/items', { query: { page: 1 } })
  const second = await client.getJson<{ page: number, items: string[], next: number | null }>('/items', { query: { page: 2 } })
  t.same(first, { page: 1, path: '/items', items: ['a', 'b'], next: 2 })
  t.same(second, { page: 2, path: '/items', items: ['c'], next: null })
})

t.test('a reply\'s data may be a function of the call, even an async one', async (t) => {
  const { mocks, registry } = await withMocks(t, { echo: { baseUrl: 'http://echo.test/e' } })
  mocks.service('echo').intercept({ method: 'POST', path: '/sync' }).reply(201, (call) => ({ got: call.json(), path: call.path }))
  mocks.service('echo').intercept({ path: '/async' }).reply(200, async (call) => `later ${call.method}`, { headers: { 'x-a': '1' } })
  const sync = await registry.client('echo').post('/sync', { json: { n: 1 } })
  t.equal(sync.status, 201)
  t.equal(sync.headers['content-type'], 'application/json')
  t.same(await sync.json(), { got: { n: 1 }, path: '/sync' })
  const later = await registry.client('echo').get('/async')
  t.equal(later.headers['x-a'], '1')
  t.equal(await later.text(), 'later GET')
})

t.test('replyWithError fails the call with the error the client gives for a real socket failure', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test', retry: false } })
  mocks.service('users').intercept({ path: '/users/7' }).replyWithError(networkError('ECONNRESET'))
  const err = await registry.client('users').get('/users/7').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ConnectionError, 'a ConnectionError, as for a real reset')
  t.match(err, { errno: 'ECONNRESET', service: 'users', method: 'GET', url: '/users/7', statusCode: 502 })
})

t.test('times(n) answers n calls and persist() every call', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test' } })
  mocks.service('users').intercept({ path: '/a' }).reply(200, 'a').times(2)
  mocks.service('users').intercept({ path: '/b' }).reply(200, 'b').persist()
  const client = registry.client('users')
  t.equal((await client.get('/a')).status, 200)
  t.equal((await client.get('/a')).status, 200)
  await t.rejects(client.get('/a'), MockUnmatchedError, 'the third call finds no interceptor')
  for (let i = 0; i < 5; i++) t.equal((await client.get('/b')).status, 200)
  t.same(mocks.pending(), [], 'a persistent interceptor that was called is not pending')
})

t.test('interceptors of the same call answer in order: a 503, 503, 200 sequence', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test' } }, { defaults: { retry: false } })
  const users = mocks.service('users')
  users.intercept({ path: '/me' }).reply(503, { error: 'busy' }).times(2)
  users.intercept({ path: '/me' }).reply(200, { id: 1 })
  const client = registry.client('users')
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await client.get('/me', { throwHttpErrors: false })).status)
  t.same(statuses, [503, 503, 200])
})

t.test('a call no interceptor matches fails clearly: service, method, path and the pending interceptors', async (t) => {
  const { mocks, registry } = await withMocks(t, { billing: { baseUrl: 'http://billing.test/api' } })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '1' } }).reply(200, [])
  mocks.service('billing').intercept({ method: 'POST', path: '/charges' }).reply(201, {}).persist()

  const err = await registry.client('billing').get('/invoices', { query: { user: 7 } }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof MockUnmatchedError, 'a MockUnmatchedError')
  t.notOk(err instanceof ConnectionError, 'not taken for a connection failure (so never retried)')
  const e = err as MockUnmatchedError
  t.equal(e.code, 'HTTP_SERVICES_ERR_MOCK_UNMATCHED')
  t.equal(e.statusCode, 500)
  t.match(e, { service: 'billing', method: 'GET', url: '/api/invoices?user=***', origin: 'http://billing.test' })
  t.match(e.message, /^billing: no mock matches GET \/invoices\?user=7 \(sent to http:\/\/billing\.test\/api\/invoices\?user=7\)/)
  t.match(e.message, /GET \/invoices\?user=1 -> 200 \(called 0 times, 1 more expected\)/)
  t.match(e.message, /POST \/charges -> 201 \(called 0 times, persistent\)/)
  t.match(e.message, /undici: Mock dispatch not matched for path '\/api\/invoices\?user=7', 2 interceptor\(s\) remaining out of 2 defined$/)
  t.same(e.pending.map((p) => [p.method, p.path, p.reply]), [['GET', '/invoices?user=1', 200], ['POST', '/charges', 201]])
  t.equal(mocks.unmatched('billing').length, 1, 'the mocks keep it for assertAllCalled')
})

t.test('a call to an origin no service uses says so', async (t) => {
  const mocks = mockHttpServices()
  t.teardown(async () => await mocks.close())
  mocks.pool('http://elsewhere.test').intercept({ path: '/x' }).reply(200, 'x')
  const ok = await mocks.dispatcher.request({ origin: 'http://elsewhere.test', path: '/x', method: 'GET', headers: ['X-Flat', '1'] })
  t.equal(await ok.body.text(), 'x', 'a raw pool answers')
  t.match(mocks.calls(), [{ service: undefined, path: '/x', headers: { 'x-flat': '1' } }], 'flat header arrays (as fetch sends) are recorded too')
  await t.rejects(mocks.dispatcher.request({ origin: 'http://elsewhere.test', path: '/y', method: 'GET' }),
    { code: 'HTTP_SERVICES_ERR_MOCK_UNMATCHED', message: /^no service of the mocks uses http:\/\/elsewhere\.test: no mock matches GET \/y/ })
})

t.test('assertAllCalled lists interceptors never called and calls never matched', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test' }, billing: { baseUrl: 'http://billing.test' } })
  mocks.service('users').intercept({ path: '/me' }).reply(200, {})
  mocks.service('billing').intercept({ path: '/invoices' }).reply(200, []).times(2)
  await registry.client('billing').get('/invoices')

  t.throws(() => mocks.assertAllCalled(), { name: 'AssertionError', message: /2 interceptor\(s\) never called:\n {2}users: GET \/me -> 200 \(called 0 times, 1 more expected\)\n {2}billing: GET \/invoices -> 200 \(called 1 time, 1 more expected\)/ })
  t.throws(() => mocks.service('users').assertAllCalled(), { message: /^mocks of users: 1 interceptor/ })

  await registry.client('users').get('/me')
  await registry.client('billing').get('/invoices')
  t.doesNotThrow(() => mocks.assertAllCalled(), 'all called')

  await registry.client('users').get('/nope').catch(() => {})
  t.throws(() => mocks.assertAllCalled(), { message: /1 call\(s\) matched no interceptor:\n {2}users: no mock matches GET \/nope/ },
    'a call that matched nothing fails it too, even if the code swallowed its error')
  t.doesNotThrow(() => mocks.service('billing').assertAllCalled(), 'billing itself is fine')
})

t.test('reset() isolates tests: no interceptor, call or unmatched call survives it', async (t) => {
  const mocks = mockHttpServices()
  const registry = createHttpServices({ services: { users: { baseUrl: 'http://users.test' } }, dispatcher: mocks.dispatcher })
  await registry.open()
  t.teardown(async () => { await registry.close(); await mocks.close() })
  t.afterEach(() => mocks.reset())

  t.test('a first test leaves an interceptor, a call and an unmatched call behind', async (t) => {
    mocks.service('users').intercept({ path: '/left-over' }).reply(200, 'stale').persist()
    mocks.service('users').intercept({ path: '/me' }).reply(200, 'me')
    await registry.client('users').get('/me')
    await registry.client('users').get('/missing').catch(() => {})
    t.equal(mocks.calls().length, 2)
  })

  t.test('the next test starts clean', async (t) => {
    t.same(mocks.pending(), [])
    t.same(mocks.calls(), [])
    t.same(mocks.unmatched(), [])
    await t.rejects(registry.client('users').get('/left-over'), MockUnmatchedError, 'the persistent interceptor is gone')
    mocks.service('users').intercept({ path: '/left-over' }).reply(200, 'fresh')
    t.equal(await (await registry.client('users').get('/left-over')).text(), 'fresh')
  })
})

t.test('service() of an unknown service says how to make it known', async (t) => {
  const mocks = mockHttpServices()
  t.teardown(async () => await mocks.close())
  t.throws(() => mocks.service('users'), { message: /unknown service "users" \(known: none\)\. Register the plugin with \{ dispatcher: mocks\.dispatcher \}/ })
  mocks.attach({ services: { billing: { baseUrl: 'http://billing.test' } } })
  t.throws(() => mocks.service('users'), { message: /\(known: billing\)/ })
})

t.test('service() of a misspelt service, once the plugin is ready, suggests the close name', async (t) => {
  const mocks = mockHttpServices()
  const app = Fastify()
  t.teardown(async () => { await app.close(); await mocks.close() })
  await app.register(httpServices, { dispatcher: mocks.dispatcher, services: { catalog: { baseUrl: 'http://catalog.test' }, users: { baseUrl: 'http://users.test' } } })
  await app.ready()
  const thrown = (() => { try { mocks.service('catalgo') } catch (err) { return err as Error } })()
  t.equal(thrown?.message, 'mocks: unknown service "catalgo" (did you mean "catalog"?) (known: catalog, users)')
  t.throws(() => mocks.service('billing'), { message: 'mocks: unknown service "billing" (known: catalog, users)' }, 'no close name: the list only')
})

t.test('reset() also resets the services: a breaker a test opened is closed, and stats start from zero', async (t) => {
  const mocks = mockHttpServices()
  const app = Fastify()
  t.teardown(async () => { await app.close(); await mocks.close() })
  await app.register(httpServices, {
    dispatcher: mocks.dispatcher,
    services: { users: { baseUrl: 'http://users.test', retry: false, breaker: { minimumRequests: 2, resetAfter: 30_000 } } }
  })
  await app.ready()
  const users = app.httpServices.client('users')
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'down' }).times(2)
  for (let i = 0; i < 2; i++) await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_STATUS' })
  await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })

  mocks.reset()
  t.match(app.httpServices.stats().users, { requests: 0, failures: 0, breaker: { state: 'closed', opens: 0 } })
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  t.same(await users.getJson('/me'), { id: 7 }, 'the next test is not refused by the breaker')
  mocks.assertAllCalled()
})

t.test('attach() makes the services known before the plugin is registered', async (t) => {
  const mocks = mockHttpServices()
  const app = Fastify()
  t.teardown(async () => { await app.close(); await mocks.close() })
  const options = mocks.attach({ services: { users: { baseUrl: 'http://users.test' } } })
  t.equal(options.dispatcher, mocks.dispatcher)
  app.register(httpServices, options)
  app.get('/', async (request) => await request.httpClient('users').getJson('/me'))
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 1 })
  const res = await app.inject('/')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { id: 1 })
})

t.test('attach() leaves bad options for the plugin to report', async (t) => {
  const mocks = mockHttpServices()
  t.teardown(async () => await mocks.close())
  const bad = { services: { users: { baseUrl: 'ftp://users.test' } } }
  t.doesNotThrow(() => mocks.attach(bad))
  t.throws(() => createHttpServices(mocks.attach(bad)), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS' })
})

t.test('a delayed reply is delayed, and one past the headers timeout fails as a real slow server would', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test', timeout: { headers: 40 } } },
    { defaults: { retry: false } })
  mocks.service('users').intercept({ path: '/slow' }).reply(200, 'late').delay(300)
  mocks.service('users').intercept({ path: '/fine' }).reply(200, 'ok').delay(10)
  t.equal(await (await registry.client('users').get('/fine')).text(), 'ok')
  await t.rejects(registry.client('users').get('/slow'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'headers', timeout: 40, service: 'users' })
})

t.test('a delayed reply past the total timeout fails with the total timeout', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: 'http://users.test' } }, { defaults: { retry: false } })
  mocks.service('users').intercept({ path: '/slow' }).reply(200, 'late').delay(300)
  await t.rejects(registry.client('users').get('/slow', { timeout: 40 }), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
})

t.test('a service with several upstreams is mocked as one', async (t) => {
  const { mocks, registry } = await withMocks(t, { users: { baseUrl: ['http://users-a.test', 'http://users-b.test'] } })
  mocks.service('users').intercept({ path: '/me' }).reply(200, 'a').persist()
  t.equal(await (await registry.client('users').get('/me')).text(), 'a')
  const raw = await mocks.dispatcher.request({ origin: 'http://users-b.test', path: '/me', method: 'GET' })
  t.equal(await raw.body.text(), 'a', 'a call to the second upstream finds the same interceptors')
  t.same(mocks.calls('users').map((c) => c.path), ['/me', '/me'])
})

t.test('services sharing an origin are told apart by their base paths', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    root: { baseUrl: 'http://api.test' },
    users: { baseUrl: 'http://api.test/users' },
    billing: { baseUrl: 'http://api.test/billing' }
  })
  mocks.service('users').intercept({ path: '/7' }).reply(200, 'user')
  mocks.service('billing').intercept({ path: '/7' }).reply(200, 'invoice')
  mocks.service('root').intercept({ path: '/usersfoo' }).reply(200, 'root')
  t.equal(await (await registry.client('billing').get('/7')).text(), 'invoice')
  t.equal(await (await registry.client('users').get('/7')).text(), 'user')
  t.equal(await (await registry.client('root').get('/usersfoo')).text(), 'root')
  t.same(mocks.calls().map((c) => [c.service, c.path]), [['billing', '/7'], ['users', '/7'], ['root', '/usersfoo']])
  await t.rejects(registry.client('billing').get('/8'), { message: /^billing: no mock matches GET \/8/ })
})

t.test('close() ends the mocks: later calls fail as calls to a closed client', async (t) => {
  const mocks = mockHttpServices()
  const registry = createHttpServices({ services: { users: { baseUrl: 'http://users.test' } }, dispatcher: mocks.dispatcher })
  await registry.open()
  t.teardown(async () => await registry.close())
  await mocks.close()
  await t.rejects(registry.client('users').get('/me'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
})

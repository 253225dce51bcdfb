import t from 'tap'
import { HttpClient, HttpStatusError, TimeoutError } from '../../index'
import { MockUnmatchedError, mockClient, mockResponse } from '../../testing'

// Code under test that takes a client, as a user's service class would.
class UserDirectory {
  constructor (private readonly users: HttpClient) {}
  async name (id: number): Promise<string | undefined> {
    try {
      return (await this.users.getJson<{ name: string }>('/users/:id', { params: { id } })).name
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) return undefined
      throw err
    }
  }
}

t.test('a mock client stands in for request.httpClient(name) in a unit test', async (t) => {
  const users = mockClient({
    get: (path) => path === '/users/:id' ? { json: { name: 'Ada' } } : { status: 404 }
  }, { service: 'users' })
  t.ok(users instanceof HttpClient, 'it is an HttpClient, so it type-checks where one is expected')
  const directory = new UserDirectory(users)
  t.equal(await directory.name(7), 'Ada')
  t.same(users.calls.map((c) => [c.method, c.path, c.options.params]), [['GET', '/users/:id', { id: 7 }]])
  t.equal(users.service, 'users')
})

t.test('every verb, the *Json helpers and stream answer from their routes', async (t) => {
  const client = mockClient({
    get: { json: { got: true } },
    head: { status: 200, headers: { 'x-head': '1' } },
    options: { status: 204 },
    post: (_path, options) => ({ status: 201, json: { received: options.json } }),
    put: (_path, options) => ({ json: { put: options.json } }),
    patch: { json: { patched: true } },
    delete: { status: 204 },
    request: (path, _options, method) => ({ text: `${method} ${path}` })
  })
  t.same(await client.getJson('/a'), { got: true })
  t.equal((await client.head('/a')).headers['x-head'], '1')
  t.equal((await client.options('/a')).status, 204)
  t.same(await client.postJson('/a', { n: 1 }), { received: { n: 1 } })
  t.same(await client.putJson('/a', { n: 2 }), { put: { n: 2 } })
  t.same(await client.patchJson('/a', {}), { patched: true })
  t.equal(await client.deleteJson('/a'), undefined, 'a 204 parses to undefined')
  t.equal(await (await client.request('trace', '/t')).text(), 'TRACE /t', 'request answers methods without their own route')
  const streamed = await client.stream('GET', '/a')
  t.same(JSON.parse(await streamed.text()), { got: true })
  t.same(client.calls.map((c) => c.method), ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'GET'])
})

t.test('a response is built anew for each call, and carries the call\'s url', async (t) => {
  const client = mockClient({ get: { json: [1] } }, { service: 'catalog' })
  const first = await client.get('/items', { query: { page: 2 } })
  t.same(await first.json(), [1])
  t.same(await (await client.get('/items')).json(), [1], 'a second call gets a fresh body')
  t.equal(first.url, 'http://synthetic.invalid/items?page=2')
})

t.test('error statuses reject with the HttpStatusError the real client throws', async (t) => {
  const client = mockClient({ get: { status: 404, json: { error: 'no such user' } }, post: { status: 409, text: 'taken' } }, { service: 'users' })
  const err = await client.get('/users/7').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof HttpStatusError)
  t.match(err, { status: 404, statusCode: 502, detail: 'no such user', service: 'users', method: 'GET', url: '/users/7' })
  t.equal((err as Error).message, 'GET users /users/7: downstream answered 404')

  const res = await client.post('/users', { throwHttpErrors: false })
  t.equal(res.status, 409, 'throwHttpErrors: false resolves')
  t.equal(await res.text(), 'taken')

  const quiet = mockClient({ get: { status: 500 } }, { throwHttpErrors: false })
  t.equal((await quiet.get('/')).status, 500, 'or for the whole client')
  const passthrough = mockClient({ get: { status: 503 } }, { passthroughStatus: true })
  await t.rejects(passthrough.get('/'), { code: 'HTTP_SERVICES_ERR_STATUS', statusCode: 503 })
})

t.test('errors reject the call; nothing throws synchronously', async (t) => {
  const timeout = new TimeoutError('slow')
  const client = mockClient({
    get: timeout,
    put: () => { throw new Error('handler failed') },
    post: async () => mockResponse({ status: 201 })
  }, { service: 'users' })
  const err = await client.get('/slow').then(() => undefined, (e: unknown) => e)
  t.equal(err, timeout)
  t.match(err, { service: 'users', method: 'GET', url: '/slow' }, 'stamped with the call like a real error')
  await t.rejects(client.put('/x'), { message: 'handler failed' })
  t.equal((await client.post('/x')).status, 201, 'a handler may be async and return an HttpResponse')
  await t.rejects(client.patch('/x'), MockUnmatchedError)
  await t.rejects(client.patch('/x'), { message: 'users: the mock client has no reply for PATCH /x (it answers: get, put, post)' })
  await t.rejects(client.request('CONNECT', '/x'), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
  await t.rejects(client.get('http://evil.test/'), { code: 'HTTP_SERVICES_ERR_FORBIDDEN_URL' }, 'paths are checked as by the real client')
  t.equal(client.calls.length, 5, 'refused calls are not recorded')
})

t.test('a mock client refuses a misspelt call option as the real client does', async (t) => {
  const client = mockClient({ get: { json: [] } }, { service: 'catalog' })
  await t.rejects(client.getJson('/items', { qurey: { q: 'x' } } as never), {
    code: 'HTTP_SERVICES_ERR_INVALID_REQUEST',
    message: 'catalog: unknown call option "qurey" (did you mean "query"?)'
  })
  t.same(client.calls, [], 'the refused call is not recorded')
  t.same(await client.getJson('/items', { query: { q: 'x' } }), [])
})

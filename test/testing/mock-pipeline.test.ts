import type { Socket } from 'node:net'
import t, { type Test } from 'tap'
import { CircuitOpenError, HttpStatusError, createHttpServices, type HttpServicesOptions } from '../../index'
import { MockUnmatchedError, mockHttpServices, networkError, type MockHttpServices } from '../../testing'
import { startServer } from '../helpers/server'


async function withMocks (t: Test, options: HttpServicesOptions): Promise<{ mocks: MockHttpServices, registry: ReturnType<typeof createHttpServices> }> {
  const mocks = mockHttpServices()
  const registry = createHttpServices(mocks.attach(options))
  await registry.open()
  t.teardown(async () => {
    await registry.close()
    await mocks.close()
  })
  return { mocks, registry }
}

// Short, fixed backoff: the tests stay fast and deterministic.
const quickRetry = { attempts: 3, baseDelay: 5, jitter: 'none' as const, budget: false as const }

t.test('a service\'s retry config runs through the mocks: 503, 503, 200 ends in 200 after 3 calls', async (t) => {
  const { mocks, registry } = await withMocks(t, { services: { users: { baseUrl: 'http://users.test', retry: quickRetry } } })
  const users = mocks.service('users')
  users.intercept({ path: '/me' }).reply(503, { error: 'busy' }).times(2)
  users.intercept({ path: '/me' }).reply(200, { id: 1 })

  const res = await registry.client('users').get('/me')
  t.equal(res.status, 200)
  t.equal(res.attempts, 3, 'the retry policy counted its attempts')
  t.same(await res.json(), { id: 1 })
  t.equal(users.calls().length, 3, 'the history holds every attempt')
  users.assertAllCalled()
})

t.test('the history keeps each attempt\'s headers as they were sent', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    services: { users: { baseUrl: 'http://users.test', retry: quickRetry, deadlineHeaders: { remaining: false } } }
  })
  mocks.service('users').intercept({ path: '/me' }).reply(503, '').times(2)
  mocks.service('users').intercept({ path: '/me' }).reply(200, 'ok')
  await registry.client('users').get('/me')
  t.same(mocks.calls('users').map((c) => c.headers['x-attempt']), ['1', '2', '3'])
})

t.test('retries give up like in production: the last 503 becomes an HttpStatusError with the attempts made', async (t) => {
  const { mocks, registry } = await withMocks(t, { services: { users: { baseUrl: 'http://users.test', retry: { ...quickRetry, attempts: 2 } } } })
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'busy' }).persist()
  const err = await registry.client('users').get('/me').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof HttpStatusError)
  t.match(err, { status: 503, attempts: 3, detail: 'busy' })
  t.equal(mocks.calls('users').length, 3)
})

t.test('a socket error from the mocks is retried as a real one', async (t) => {
  const { mocks, registry } = await withMocks(t, { services: { users: { baseUrl: 'http://users.test', retry: quickRetry } } })
  mocks.service('users').intercept({ path: '/me' }).replyWithError(networkError('ECONNRESET'))
  mocks.service('users').intercept({ path: '/me' }).reply(200, 'ok')
  const res = await registry.client('users').get('/me')
  t.equal(await res.text(), 'ok')
  t.equal(res.attempts, 2)
})

t.test('a reply delayed past the headers timeout is retried as a real slow answer', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    services: { users: { baseUrl: 'http://users.test', retry: quickRetry, timeout: { headers: 30 } } }
  })
  mocks.service('users').intercept({ path: '/me' }).reply(200, 'late').delay(200)
  mocks.service('users').intercept({ path: '/me' }).reply(200, 'fast')
  const res = await registry.client('users').get('/me')
  t.equal(await res.text(), 'fast')
  t.equal(res.attempts, 2)
})

t.test('a call no interceptor matches is not retried', async (t) => {
  const { mocks, registry } = await withMocks(t, { services: { users: { baseUrl: 'http://users.test', retry: quickRetry } } })
  await t.rejects(registry.client('users').get('/nothing'), MockUnmatchedError)
  t.equal(mocks.calls('users').length, 1)
})

t.test('the breaker opens on mocked failures, then fails fast without calling the mocks', async (t) => {
  const { mocks, registry } = await withMocks(t, {
    services: { users: { baseUrl: 'http://users.test', retry: false, breaker: { minimumRequests: 3, errorPercentage: 50, resetAfter: 60000 } } }
  })
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'down' }).persist()
  const client = registry.client('users')
  for (let i = 0; i < 3; i++) await t.rejects(client.get('/me'), HttpStatusError, `failure ${i + 1} reaches the mocks`)
  const err = await client.get('/me').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof CircuitOpenError, 'then the breaker is open')
  t.match(err, { statusCode: 503, service: 'users' })
  t.equal(mocks.calls('users').length, 3, 'the open breaker kept the fourth call from the mocks')
  t.match(registry.stats().users, { breaker: { state: 'open' } })
})

t.test('no real socket is opened, even for a service pointing at a listening server', async (t) => {
  const server = await startServer((_req, res) => { res.end('real') })
  let connections = 0
  server.server.on('connection', (_s: Socket) => { connections++ })
  t.teardown(async () => await server.close())
  const { mocks, registry } = await withMocks(t, { services: { local: { baseUrl: server.url, retry: false } } })

  // The server really is reachable: a plain request gets its answer.
  const direct = await fetch(`${server.url}/probe`)
  t.equal(await direct.text(), 'real')
  const before = connections

  mocks.service('local').intercept({ path: '/x' }).reply(200, 'mocked')
  t.equal(await (await registry.client('local').get('/x')).text(), 'mocked', 'the mock answered')
  await t.rejects(registry.client('local').get('/not-mocked'), MockUnmatchedError, 'an unmatched call is refused, not sent')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(connections, before, 'the server saw no connection from the client')
  t.same(server.requests.map((r) => r.url), ['/probe'], 'the server saw only the direct probe')
})

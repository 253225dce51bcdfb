import t from 'tap'
import { CircuitOpenError, createHttpServices } from '../../index'
import { mockHttpServices } from '../../testing'

// A service with several upstreams and a breaker picks the upstream of each call itself (one breaker per upstream);
// the mocks still serve it from one set of interceptors.
t.test('a mocked service with several upstreams and a breaker', async (t) => {
  const mocks = mockHttpServices()
  const registry = createHttpServices({
    services: {
      users: {
        baseUrl: ['http://users-a.test', 'http://users-b.test'],
        retry: false,
        throwHttpErrors: false,
        breaker: { minimumRequests: 2, resetAfter: 5000 }
      }
    },
    dispatcher: mocks.dispatcher
  })
  await registry.open()
  t.teardown(async () => {
    await registry.close()
    await mocks.close()
  })
  const users = registry.client('users')

  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 1 }).times(2)
  const first = await users.get('/me')
  const second = await users.get('/me')
  t.same(await first.json(), { id: 1 })
  t.same(await second.json(), { id: 1 })
  t.same([first.url, second.url], ['http://users-a.test/me', 'http://users-b.test/me'], 'each upstream in turn, both mocked')
  t.same(mocks.calls('users').map((c) => c.path), ['/me', '/me'], 'the calls are the service\'s')
  mocks.assertAllCalled()

  mocks.service('users').intercept({ path: '/down' }).reply(503, 'down').persist()
  for (let i = 0; i < 4; i++) t.equal((await users.get('/down')).status, 503)
  t.match(registry.stats().users.breaker, {
    state: 'open',
    upstreams: { 'http://users-a.test': { state: 'open' }, 'http://users-b.test': { state: 'open' } }
  })
  await t.rejects(users.get('/down'), CircuitOpenError, 'every upstream open: the call fails at once')
})

import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Dispatcher } from 'undici'
import httpServices, { HttpStatusError } from '../../index'
import { mockHttpServices } from '../../testing'

// The app under test, as a user would write it: the dispatcher is the only thing a test changes.
function buildApp (dispatcher?: Dispatcher): FastifyInstance {
  const app = Fastify()
  app.register(httpServices, {
    dispatcher,
    services: {
      users: { baseUrl: 'http://users.internal', retry: { attempts: 2, baseDelay: 10 } },
      billing: { baseUrl: 'http://billing.internal/api' }
    }
  })
  app.get('/me/invoices', async (request, reply) => {
    const user = await request.httpClient('users').getJson<{ id: number }>('/me')
    try {
      return await request.httpClient('billing').getJson('/invoices', { query: { user: user.id } })
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) return await reply.code(404).send({ error: 'no invoices yet' })
      throw err
    }
  })
  return app
}

const mocks = mockHttpServices()
const app = buildApp(mocks.dispatcher)
t.before(async () => await app.ready())
t.afterEach(() => mocks.reset())
t.teardown(async () => {
  await app.close()
  await mocks.close()
})

t.test('a route calling two services answers from the mocks', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [{ id: 'inv_1', total: 42 }])

  const res = await app.inject('/me/invoices')
  t.equal(res.statusCode, 200)
  t.same(res.json(), [{ id: 'inv_1', total: 42 }])
  t.match(mocks.service('users').lastCall(), { method: 'GET', path: '/me', headers: { 'x-request-id': String } })
  mocks.assertAllCalled()
})

t.test('the users service\'s retry config rides out two 503s', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'busy' }).times(2)
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [])

  const res = await app.inject('/me/invoices')
  t.equal(res.statusCode, 200)
  t.equal(mocks.service('users').calls().length, 3)
  mocks.assertAllCalled()
})

t.test('a billing 404 is mapped by the route; a users failure becomes a 502', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(404, { error: 'no such user' })
  const notFound = await app.inject('/me/invoices')
  t.equal(notFound.statusCode, 404)
  t.same(notFound.json(), { error: 'no invoices yet' })

  mocks.service('users').intercept({ path: '/me' }).reply(500, { error: 'boom' }).times(3)
  const failed = await app.inject('/me/invoices')
  t.equal(failed.statusCode, 502)
  t.match(failed.json(), { code: 'HTTP_SERVICES_ERR_STATUS', message: /^GET users \/me: downstream answered 500$/ })
  mocks.assertAllCalled()
})

// app.test.ts
import t from 'tap'
import { mockHttpServices } from '../testing'
import { buildApp } from './readme-testing/app'

const mocks = mockHttpServices()
const app = buildApp(mocks.dispatcher)
t.before(async () => await app.ready())   // the services are now known to the mocks
t.afterEach(() => mocks.reset())         // no interceptor, call, open breaker or count leaks into the next test
t.teardown(async () => { await app.close(); await mocks.close() })

t.test('a route calling two services answers from the mocks', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  // paths are relative to the service's baseUrl (here /api); the query must match
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [{ id: 'inv_1', total: 42 }])

  const res = await app.inject('/me/invoices')
  t.equal(res.statusCode, 200)
  t.same(res.json(), [{ id: 'inv_1', total: 42 }])
  t.match(mocks.service('users').lastCall(), { method: 'GET', path: '/me' })
  mocks.assertAllCalled() // every mock was used, and no call went unmatched
})

t.test('the users retry config rides out two 503s', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'busy' }).times(2)
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [])

  const res = await app.inject('/me/invoices')
  t.equal(res.statusCode, 200)
  t.equal(mocks.service('users').calls().length, 3) // every attempt is in the history
  mocks.assertAllCalled()
})

t.test('a billing 404 is mapped by the route; a users failure becomes a 502', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(404, { error: 'no such user' })
  const notFound = await app.inject('/me/invoices')
  t.equal(notFound.statusCode, 404)
  t.same(notFound.json(), { error: 'no invoices yet' })

  mocks.service('users').intercept({ path: '/me' }).reply(500, { error: 'boom' }).times(3) // 1 try + 2 retries
  const failed = await app.inject('/me/invoices')
  t.equal(failed.statusCode, 502)
  t.match(failed.json(), { code: 'HTTP_SERVICES_ERR_STATUS', message: /^GET users \/me: downstream answered 500$/ })
  mocks.assertAllCalled()
})

t.test('a users outage opens its breaker: then the route fails fast with 503', async (t) => {
  mocks.service('users').intercept({ path: '/me' }).reply(503, { error: 'down' }).persist()
  t.equal((await app.inject('/me/invoices')).statusCode, 502) // three attempts, all counted by the breaker
  t.equal((await app.inject('/me/invoices')).statusCode, 502) // the fourth failure opens it: no retry after that
  const open = await app.inject('/me/invoices')
  t.equal(open.statusCode, 503)
  t.match(open.json(), { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' })
  t.equal(mocks.service('users').calls().length, 4) // the open breaker kept the last call off the network
})

t.test('the next test starts afresh: mocks.reset() closed the breaker and zeroed the stats', async (t) => {
  t.match(app.httpServices.stats().users, { requests: 0, failures: 0, breaker: { state: 'closed' } })
  mocks.service('users').intercept({ path: '/me' }).reply(200, { id: 7 })
  mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [])
  t.equal((await app.inject('/me/invoices')).statusCode, 200)
})

// ---- Not in the README: the code above is its Testing example, imports aside; this checks that the two still match.

t.test('the README\'s Testing example is the code this file runs', async (t) => {
  const { readFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8')
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1])
  const block = (first: string): string => {
    const found = blocks.filter((b) => b.startsWith(`${first}\n`))
    t.equal(found.length, 1, `one README block starts with ${first}`)
    return found[0] ?? ''
  }
  // The README imports the package; this copy imports the sources.
  const local = (code: string, root: string): string => code
    .replaceAll("from 'fastify-http-services/testing'", `from '${root}/testing'`)
    .replaceAll("from 'fastify-http-services'", `from '${root}/index'`)
    .replaceAll("from './app'", "from './readme-testing/app'")
  const self = readFileSync(__filename, 'utf8')
  const hint = 'copy the README block over it (only the imports differ), or fix the README'
  t.equal(self.slice(0, self.indexOf('\n// ---- Not in the README')), local(block('// app.test.ts'), '..'), `test/readme-testing.test.ts: ${hint}`)
  t.equal(readFileSync(join(__dirname, 'readme-testing', 'app.ts'), 'utf8'), local(block('// app.ts'), '../..'), `test/readme-testing/app.ts: ${hint}`)
})

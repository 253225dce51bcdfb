import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mockHttpServices } from '../testing'
import { buildGateway } from './gateway'
import { startCatalog, startInventory } from './downstreams'

// The gateway's routes against mocks: no network, the gateway's real retry, breaker and fallback config.
// Each test gets its own app, so breaker state never leaks from one test into the next.
async function withMocks (t: Test) {
  const mocks = mockHttpServices()
  const app = await buildGateway({
    catalogUrl: 'http://catalog.test',
    inventoryUrl: 'http://inventory.test',
    plugin: { dispatcher: mocks.dispatcher }
  })
  await app.ready()
  t.teardown(async () => { await app.close(); await mocks.close() })
  return { app, mocks, catalog: mocks.service('catalog'), inventory: mocks.service('inventory') }
}

t.test('aggregates both services and rides out two inventory 503s', async (t) => {
  const { app, mocks, catalog, inventory } = await withMocks(t)
  catalog.intercept({ path: '/products/p1' }).reply(200, { id: 'p1', name: 'Lamp', price: 10 })
  inventory.intercept({ path: '/stock/p1' }).reply(503, { error: 'busy' }).times(2)
  inventory.intercept({ path: '/stock/p1' }).reply(200, { sku: 'p1', available: 3 })
  const res = await app.inject('/products/p1')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { id: 'p1', name: 'Lamp', price: 10, stock: { sku: 'p1', available: 3 } })
  t.equal(inventory.calls().length, 3, 'two retries')
  mocks.assertAllCalled()
})

t.test('maps an inventory 404 to a clean 404 with the upstream detail', async (t) => {
  const { app, inventory } = await withMocks(t)
  inventory.intercept({ path: '/stock/nope' }).reply(404, { title: 'Unknown SKU', detail: 'SKU nope does not exist' },
    { headers: { 'content-type': 'application/problem+json' } })
  const res = await app.inject('/stock/nope')
  t.equal(res.statusCode, 404)
  t.same(res.json(), { error: 'not found', detail: 'Unknown SKU: SKU nope does not exist' })
})

t.test('falls back to available: null when inventory keeps failing, and the breaker opens', async (t) => {
  const { app, catalog, inventory } = await withMocks(t)
  catalog.intercept({ path: /^\/products\// }).reply(200, { id: 'p2', name: 'Desk', price: 99 }).persist()
  inventory.intercept({ path: /^\/stock\// }).reply(503, { error: 'down' }).persist()
  const first = await app.inject('/products/p2')
  t.equal(first.statusCode, 200)
  t.same(first.json().stock, { available: null, stale: true })
  t.equal(inventory.calls().length, 4, 'one try and three retries before the fallback')
  // 4 failures in a row pass the breaker's minimum of 5 calls with the next one: it opens.
  await app.inject('/products/p2')
  t.match(app.httpServices.stats().inventory, { breaker: { state: 'open' } })
  const seen = inventory.calls().length
  const fast = await app.inject('/products/p2')
  t.same(fast.json().stock, { available: null, stale: true })
  t.equal(inventory.calls().length, seen, 'an open breaker answers without calling inventory')
})

t.test('a catalog failure is a 502 with a clean JSON error', async (t) => {
  const { app, catalog, inventory } = await withMocks(t)
  catalog.intercept({ path: '/products/p3' }).reply(500, { error: 'db down' }).times(4)
  inventory.intercept({ path: '/stock/p3' }).reply(200, { sku: 'p3', available: 1 }).persist()
  const res = await app.inject('/products/p3')
  t.equal(res.statusCode, 502)
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_STATUS', message: 'GET catalog /products/p3: downstream answered 500' })
})

// The same gateway against its real in-process fake downstreams, as `npm run example` runs it.
t.test('against the fake downstreams, the export is streamed through intact', async (t) => {
  const catalog = await startCatalog()
  const inventory = await startInventory({ outage: false })
  const app = await buildGateway({ catalogUrl: catalog.url, inventoryUrl: inventory.url })
  t.teardown(async () => { await app.close(); await catalog.close(); await inventory.close() })
  const res = await app.inject('/export.csv?rows=50000')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/csv/)
  const lines = res.body.trimEnd().split('\n')
  t.equal(lines.length, 50000)
  t.equal(lines[49999], '49999,product-49999,99.99')
  const expected = createHash('sha256')
  for (let i = 0; i < 50000; i++) expected.update(`${i},product-${i},${(i % 100) + 0.99}\n`)
  t.equal(createHash('sha256').update(res.body).digest('hex'), expected.digest('hex'))
})

t.test('serves the live services page and its JSON, a row per service', async (t) => {
  const { app } = await withMocks(t)
  const page = await app.inject('/_services')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.headers['content-security-policy'], /default-src 'none'/)
  const res = await app.inject('/_services.json')
  t.equal(res.statusCode, 200)
  t.same(res.json().services.map((s: { name: string }) => s.name).sort(), ['catalog', 'inventory'])
})

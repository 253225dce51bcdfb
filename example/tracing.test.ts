import { SpanKind } from '@opentelemetry/api'
import t from 'tap'
import { mockHttpServices } from '../testing'
import { buildGateway } from './gateway'
import { spanTree, startTracing } from './tracing'

// `TRACING=1 npm run example`: the tree of one request's spans, here with mock downstreams (the calls' spans are the
// library's, whatever the dispatcher).
t.test('the tracing mode prints a request\'s spans as a tree, the retried call as one span per attempt', async (t) => {
  const tracing = startTracing()
  const mocks = mockHttpServices()
  const app = await buildGateway({ catalogUrl: 'http://catalog.test', inventoryUrl: 'http://inventory.test', plugin: { dispatcher: mocks.dispatcher } })
  t.teardown(async () => { await app.close(); await mocks.close(); await tracing.stop() })
  mocks.service('catalog').intercept({ path: '/products/p1' }).reply(200, { id: 'p1', name: 'Lamp', price: 10 })
  mocks.service('inventory').intercept({ path: '/stock/p1' }).reply(503, { error: 'busy' })
  mocks.service('inventory').intercept({ path: '/stock/p1' }).reply(200, { sku: 'p1', available: 3 })
  const res = await app.inject('/products/p1')
  t.equal(res.statusCode, 200)
  const root = tracing.spans().find((s) => s.kind === SpanKind.SERVER)
  t.ok(root, 'the request span')
  if (root === undefined) return
  const tree = spanTree(tracing.spans(), root)
  t.match(tree, /^request \[SERVER\]/)
  t.match(tree, /└─ GET \/products\/:id \[CLIENT\] [\d.]+ ms {2}service=catalog status=200/)
  t.match(tree, /└─ GET \/stock\/:sku \[CLIENT\] [\d.]+ ms {2}service=inventory status=503 error\.type=503/)
  t.match(tree, /└─ GET \/stock\/:sku \[CLIENT\] [\d.]+ ms {2}service=inventory status=200 resend_count=1/)
})

import t, { type Test } from 'tap'
import { BulkheadRejectedError, TimeoutError, createHttpServices, type BulkheadOptions } from '../../index'
import { sendJson, startServer } from '../helpers/server'

/** A server answering after `delay` ms that records how many requests it held at once. */
async function slowServer (t: Test, delay: number) {
  let current = 0
  let peak = 0
  const server = await startServer((_req, res) => {
    current++
    peak = Math.max(peak, current)
    setTimeout(() => {
      current--
      sendJson(res, 200, { ok: true })
    }, delay)
  })
  t.teardown(async () => await server.close())
  return { server, peak: () => peak }
}

async function setup (t: Test, url: string, bulkhead: BulkheadOptions) {
  const services = createHttpServices({ services: { api: { baseUrl: url, retry: false, bulkhead } } })
  await services.open()
  t.teardown(async () => await services.close())
  return { services, api: services.client('api') }
}

t.test('overflow is rejected at once while the server never holds more than maxConcurrent and the queue stays bounded', async (t) => {
  const { server, peak } = await slowServer(t, 80)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 2, maxQueue: 3 })
  const calls = Array.from({ length: 12 }, async (_, i) => await api.getJson(`/${i}`))
  const stats = services.stats().api.bulkhead
  t.match(stats, { maxConcurrent: 2, maxQueue: 3, active: 2, queued: 3, rejected: 7 }, 'stats while saturated')
  const results = await Promise.allSettled(calls)
  const rejected = results.filter((r) => r.status === 'rejected')
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 5, 'the in-flight and the queued calls succeed')
  t.equal(rejected.length, 7)
  for (const r of rejected) {
    t.match((r as PromiseRejectedResult).reason, { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED', statusCode: 503, service: 'api' })
    t.ok((r as PromiseRejectedResult).reason instanceof BulkheadRejectedError)
  }
  t.ok(peak() <= 2, `server concurrency ${peak()} <= 2`)
  t.equal(server.requests.length, 5)
  t.match(services.stats().api.bulkhead, { active: 0, queued: 0, rejected: 7 })
})

t.test('with the default maxQueue 0 nothing waits', async (t) => {
  const { server } = await slowServer(t, 30)
  const { api } = await setup(t, server.url, { maxConcurrent: 1 })
  const first = api.getJson('/a')
  await t.rejects(api.getJson('/b'), BulkheadRejectedError)
  t.same(await first, { ok: true })
})

t.test('a queued call gives up after queueTimeout with a queue TimeoutError', async (t) => {
  const { server } = await slowServer(t, 300)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 5, queueTimeout: 40 })
  const first = api.getJson('/a')
  const err = await api.getJson('/b').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof TimeoutError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'queue', timeout: 40, statusCode: 504, message: /queueTimeout 40 ms/ })
  t.match(services.stats().api.bulkhead, { queued: 0, queueTimeouts: 1 })
  await first
  t.equal(server.requests.length, 1)
})

t.test('a queued call leaves the queue at once when its signal aborts', async (t) => {
  const { server } = await slowServer(t, 150)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 1 })
  const first = api.getJson('/a')
  const ac = new AbortController()
  const queued = api.getJson('/b', { signal: ac.signal })
  t.match(services.stats().api.bulkhead, { queued: 1 })
  ac.abort()
  await t.rejects(queued, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  t.match(services.stats().api.bulkhead, { queued: 0 })
  const third = api.getJson('/c')
  t.match(services.stats().api.bulkhead, { queued: 1 }, 'the freed queue place is usable')
  await Promise.all([first, third])
  t.same(server.requests.map((r) => r.url), ['/a', '/c'], 'the aborted call never reached the server')
})

t.test('a slot is released when the response is returned, even if its body is never read', async (t) => {
  const { server } = await slowServer(t, 5)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1 })
  const unread = await api.get('/a')
  t.match(services.stats().api.bulkhead, { active: 0 })
  t.same(await api.getJson('/b'), { ok: true }, 'the next call gets the slot')
  await unread.dump()
})

t.test('the slot is handed to the first waiter, in order', async (t) => {
  const { server } = await slowServer(t, 20)
  const { api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 3 })
  await Promise.all(['/1', '/2', '/3', '/4'].map(async (p) => await api.getJson(p)))
  t.same(server.requests.map((r) => r.url), ['/1', '/2', '/3', '/4'])
})

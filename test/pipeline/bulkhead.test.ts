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

t.test('waiters that give up in the middle of a long queue leave it; the others keep their turn', async (t) => {
  const { server } = await slowServer(t, 2)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 40 })
  const controllers = Array.from({ length: 40 }, () => new AbortController())
  const first = api.getJson('/first')
  const queued = controllers.map(async (c, i) => await api.getJson(`/${i}`, { signal: c.signal }))
  t.match(services.stats().api.bulkhead, { active: 1, queued: 40 })
  // Every odd waiter, the last one included, gives up while the first call holds the slot.
  for (let i = 1; i < 40; i += 2) controllers[i].abort()
  t.match(services.stats().api.bulkhead, { queued: 20 })
  const results = await Promise.allSettled([first, ...queued])
  for (let i = 0; i < 40; i++) {
    t.equal(results[i + 1].status, i % 2 === 0 ? 'fulfilled' : 'rejected', `call ${i}`)
  }
  t.same(server.requests.map((r) => r.url), ['/first', ...Array.from({ length: 20 }, (_, k) => `/${k * 2}`)],
    'the remaining waiters ran in the order they came')
  t.match(services.stats().api.bulkhead, { active: 0, queued: 0 })
})

t.test('queued calls time out in the order they came, each a queueTimeout after it started waiting', async (t) => {
  const { server } = await slowServer(t, 400)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 5, queueTimeout: 60 })
  const first = api.getJson('/first')
  const order: string[] = []
  const early = api.getJson('/early').catch((err: { phase?: string }) => { order.push(`early ${err.phase}`) })
  await new Promise((resolve) => setTimeout(resolve, 30))
  const late = api.getJson('/late').catch((err: { phase?: string }) => {
    order.push(`late ${err.phase}`)
  })
  await early
  t.same(order, ['early queue'], 'the first waiter timed out alone')
  t.match(services.stats().api.bulkhead, { queued: 1 }, 'the later waiter still waits')
  await late
  t.same(order, ['early queue', 'late queue'])
  t.match(services.stats().api.bulkhead, { queued: 0, queueTimeouts: 2 })
  await first
  t.equal(server.requests.length, 1)
})

t.test('a queue of 10,000 waiters that all give up at once empties without leaving anything behind', async (t) => {
  const { server } = await slowServer(t, 100)
  const { services, api } = await setup(t, server.url, { maxConcurrent: 1, maxQueue: 10_000 })
  const controller = new AbortController()
  const first = api.getJson('/first')
  const calls = Array.from({ length: 10_000 }, async (_, i) => await api.getJson(`/${i}`, { signal: controller.signal }))
  t.match(services.stats().api.bulkhead, { queued: 10_000 })
  controller.abort()
  const results = await Promise.allSettled(calls)
  t.equal(results.filter((r) => r.status === 'rejected').length, 10_000)
  t.match(services.stats().api.bulkhead, { queued: 0 })
  await first
  t.same(server.requests.map((r) => r.url), ['/first'])
})

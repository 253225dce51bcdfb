import t from 'tap'
import { createHttpServices, type Logger } from '../../index'
import { RetryBudget } from '../../lib/pipeline/retry-budget'
import { sendJson, startServer } from '../helpers/server'

t.test('allows retries up to ratio x requests in the window', async (t) => {
  const counters = { requests: 10 }
  const budget = new RetryBudget(counters, { ratio: 0.5, minPerSecond: 0 }, 1000, 0)
  t.equal(budget.tryRetry(undefined, 1), false, 'requests made before the budget existed do not count')
  counters.requests = 20
  for (let i = 0; i < 5; i++) t.equal(budget.tryRetry(undefined, 10 + i), true, `retry ${i + 1} of 5`)
  t.equal(budget.tryRetry(undefined, 20), false, 'the sixth is refused')
  t.same(budget.stats(30), { ratio: 0.5, minPerSecond: 0, window: 1000, requests: 10, retries: 5, available: 0 })
  counters.requests = 22
  t.equal(budget.tryRetry(undefined, 40), true, 'two more requests buy one more retry')
  t.equal(budget.tryRetry(undefined, 40), false)
})

t.test('forgets retries and requests as the window slides', async (t) => {
  const counters = { requests: 0 }
  const budget = new RetryBudget(counters, { ratio: 1, minPerSecond: 0 }, 1000, 0)
  counters.requests = 2
  t.equal(budget.tryRetry(undefined, 50), true)
  t.equal(budget.tryRetry(undefined, 50), true)
  t.equal(budget.tryRetry(undefined, 950), false, 'still in the window')
  counters.requests = 3
  t.equal(budget.tryRetry(undefined, 960), true, 'a new request in the window')
  // At 1050 ms the first bucket (0-100 ms), holding two retries and two requests, has left the window.
  t.match(budget.stats(1050), { requests: 1, retries: 1 })
  t.equal(budget.tryRetry(undefined, 1050), false, 'one request left for one retry spent')
  t.match(budget.stats(5000), { requests: 0, retries: 0 }, 'after a quiet window everything is forgotten')
})

t.test('reset forgets the retries spent and counts requests from the counter as it is then', async (t) => {
  const counters = { requests: 0 }
  const budget = new RetryBudget(counters, { ratio: 0.5, minPerSecond: 0 }, 1000, 0)
  counters.requests = 4
  t.equal(budget.tryRetry(undefined, 10), true)
  t.equal(budget.tryRetry(undefined, 10), true)
  t.equal(budget.tryRetry(undefined, 10), false, 'spent')
  counters.requests = 0
  budget.reset(20)
  t.match(budget.stats(20), { requests: 0, retries: 0, available: 0 })
  counters.requests = 2
  t.equal(budget.tryRetry(undefined, 30), true, 'a fresh window: half of the 2 new requests')
  t.equal(budget.tryRetry(undefined, 30), false)
})

t.test('always allows minPerSecond x window seconds retries, and a call may bring its own limits', async (t) => {
  const counters = { requests: 0 }
  const budget = new RetryBudget(counters, { ratio: 0.1, minPerSecond: 2 }, 1000, 0)
  t.equal(budget.tryRetry(undefined, 1), true)
  t.equal(budget.tryRetry(undefined, 2), true)
  t.equal(budget.tryRetry(undefined, 3), false, 'the floor is 2 per second over a 1 s window')
  t.equal(budget.tryRetry({ ratio: 0, minPerSecond: 5 }, 4), true, 'a call with a higher floor')
  t.match(budget.stats(5), { available: 0, retries: 3 })
})

/** A server that fails every other request with a 503. */
async function halfFailing (t: tap.Test): Promise<{ url: string, hits: () => number }> {
  let hits = 0
  const server = await startServer((_req, res) => {
    hits++
    sendJson(res, hits % 2 === 1 ? 503 : 200, {})
  })
  t.teardown(() => server.close())
  return { url: server.url, hits: () => hits }
}

t.test('caps the load a half-failing upstream sees at about 1.2x the offered requests', async (t) => {
  const upstream = await halfFailing(t)
  const warns: Array<Record<string, unknown>> = []
  const logger: Logger = { debug () {}, info () {}, warn (obj) { warns.push(obj as Record<string, unknown>) }, error () {}, child: () => logger }
  const services = createHttpServices({
    logger,
    services: {
      api: {
        baseUrl: upstream.url,
        throwHttpErrors: false,
        // The budget alone: a half-failing upstream would open the breaker (on by default) and stop the retries.
        breaker: false,
        retry: { attempts: 3, baseDelay: 0, budget: { ratio: 0.2, minPerSecond: 0.05, window: 60000 } }
      }
    }
  })
  await services.open()
  t.teardown(() => services.close())
  const api = services.client('api')
  let failed = 0
  for (let i = 0; i < 200; i++) {
    const res = await api.get('/x')
    await res.dump()
    if (res.status !== 200) failed++
  }
  const load = upstream.hits() / 200
  t.ok(load <= 1.3, `the upstream saw ${upstream.hits()} requests for 200 calls (${load.toFixed(2)}x)`)
  t.ok(load >= 1.1, 'retries did happen within the budget')
  t.ok(failed > 0, 'calls the budget did not cover failed')
  const stats = services.stats().api.retry as { retries: number, budgetExhausted: number, budget: { ratio: number, retries: number } }
  t.equal(stats.budgetExhausted, failed, 'each refused retry is counted')
  t.equal(stats.retries, upstream.hits() - 200)
  t.match(stats.budget, { ratio: 0.2, minPerSecond: 0.05, window: 60000, requests: 200, retries: stats.retries })
  t.equal(warns.filter((w) => w.why === 'retry budget exhausted').length, failed, 'each give-up is logged once')
})

t.test('without a budget the same upstream sees about twice the load', async (t) => {
  const upstream = await halfFailing(t)
  const services = createHttpServices({
    services: { api: { baseUrl: upstream.url, throwHttpErrors: false, breaker: false, retry: { attempts: 3, baseDelay: 0, budget: false } } }
  })
  await services.open()
  t.teardown(() => services.close())
  for (let i = 0; i < 200; i++) await (await services.client('api').get('/x')).dump()
  t.ok(upstream.hits() / 200 >= 1.9, `the upstream saw ${upstream.hits()} requests for 200 calls`)
  t.match(services.stats().api.retry, { budgetExhausted: 0, budget: undefined })
})

t.test('a call may turn the budget off', async (t) => {
  const upstream = await halfFailing(t)
  const services = createHttpServices({
    services: { api: { baseUrl: upstream.url, throwHttpErrors: false, retry: { baseDelay: 0, budget: { ratio: 0, minPerSecond: 0 } } } }
  })
  await services.open()
  t.teardown(() => services.close())
  const api = services.client('api')
  const refused = await api.get('/x')
  await refused.dump()
  t.equal(refused.attempts, 1, 'an empty budget allows no retry')
  await (await api.get('/x')).dump()
  const res = await api.get('/x', { retry: { budget: false } })
  t.equal(res.status, 200)
  t.equal(res.attempts, 2, 'retried outside the budget')
})

import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import Fastify from 'fastify'
import httpServices, { type HttpServicesOptions } from '../../index'
import { startServer } from '../helpers/server'

/** A downstream that answers after `?delay=` ms, and an app whose route waits `?wait=` ms then calls it. */
async function setup (t: tap.Test, options: Omit<HttpServicesOptions, 'services'>) {
  const timers = new Set<NodeJS.Timeout>()
  const server = await startServer((req, res) => {
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0)
    const timer = setTimeout(() => { timers.delete(timer); res.end('{"ok":true}') }, delay)
    timers.add(timer)
  })
  const app = Fastify()
  await app.register(httpServices, { defaults: { retry: false }, ...options, services: { api: { baseUrl: server.url } } })
  app.get('/', async (request) => {
    const q = request.query as { wait?: string, delay?: string, timeout?: string }
    if (q.wait !== undefined) await sleep(Number(q.wait))
    const timeout = q.timeout !== undefined ? Number(q.timeout) : undefined
    return await request.httpClient('api').getJson('/', { query: { delay: q.delay ?? '0' }, timeout })
  })
  t.teardown(async () => {
    for (const timer of timers) clearTimeout(timer)
    await app.close()
    await server.close()
  })
  return { app, server }
}

t.test('requestDeadline bounds a downstream call: 504 with TimeoutError phase total', async (t) => {
  const { app } = await setup(t, { requestDeadline: 150 })
  const res = await app.inject('/?delay=600')
  t.equal(res.statusCode, 504)
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_TIMEOUT', message: /the inbound request's deadline passed/ })
  const fast = await app.inject('/?delay=0')
  t.equal(fast.statusCode, 200, 'a call that fits the deadline is not affected')
})

t.test('the deadline counts from the arrival of the inbound request, not from the call', async (t) => {
  const { app } = await setup(t, { requestDeadline: 150 })
  // 100 ms spent in the route leave at most 50 ms for a call that needs 100 ms.
  const res = await app.inject('/?wait=100&delay=100')
  t.equal(res.statusCode, 504)
  t.match(res.json(), { code: 'HTTP_SERVICES_ERR_TIMEOUT' })
})

t.test('a call made after the deadline passed fails at once, without reaching the downstream', async (t) => {
  const { app, server } = await setup(t, { requestDeadline: 50 })
  const res = await app.inject('/?wait=80')
  t.equal(res.statusCode, 504)
  t.equal(server.requests.length, 0)
})

t.test('deadlineHeader: the inbound header sets the budget; without it calls are unbounded', async (t) => {
  const { app, server } = await setup(t, { deadlineHeader: 'X-Request-Timeout-Ms' })
  const bounded = await app.inject({ url: '/?delay=600', headers: { 'x-request-timeout-ms': '150' } })
  t.equal(bounded.statusCode, 504)
  t.match(bounded.json(), { code: 'HTTP_SERVICES_ERR_TIMEOUT', message: /deadline passed/ })
  const free = await app.inject('/?delay=200')
  t.equal(free.statusCode, 200, 'no header: no deadline')
  const zero = await app.inject({ url: '/?delay=0', headers: { 'x-request-timeout-ms': '0' } })
  t.equal(zero.statusCode, 504, 'a budget of 0 is already spent')
  const junk = await app.inject({ url: '/?delay=0', headers: { 'x-request-timeout-ms': 'soon' } })
  t.equal(junk.statusCode, 200, 'a value that is not a number is ignored')
  t.equal(server.requests.filter((r) => r.url === '/?delay=0').length, 1, 'the spent budget never reached the downstream')
})

t.test('a deadline header longer than a timer can wait (24.8 days) is no deadline, not one that has passed', async (t) => {
  const { app } = await setup(t, { deadlineHeader: 'x-request-timeout-ms' })
  for (const value of ['2147483648', '9999999999']) {
    const res = await app.inject({ url: '/?delay=20', headers: { 'x-request-timeout-ms': value } })
    t.equal(res.statusCode, 200, value)
  }
  const longest = await app.inject({ url: '/?delay=20', headers: { 'x-request-timeout-ms': '2147483647' } })
  t.equal(longest.statusCode, 200, 'the longest a timer waits is a deadline that holds')
})

t.test('deadlineHeader is capped by requestDeadline', async (t) => {
  const { app } = await setup(t, { deadlineHeader: 'x-request-timeout-ms', requestDeadline: 150 })
  const res = await app.inject({ url: '/?delay=600', headers: { 'x-request-timeout-ms': '60000' } })
  t.equal(res.statusCode, 504)
})

t.test('a per-call timeout shorter than the deadline wins, and says so', async (t) => {
  const { app } = await setup(t, { requestDeadline: 5000 })
  const res = await app.inject('/?delay=600&timeout=100')
  t.equal(res.statusCode, 504)
  t.match(res.json(), { message: /total timeout after 100 ms/ })
})

t.test('without requestDeadline or deadlineHeader inbound requests add no deadline', async (t) => {
  const { app } = await setup(t, {})
  const res = await app.inject('/?delay=200')
  t.equal(res.statusCode, 200)
})

t.test('a call queued in the bulkhead gives up at its inbound deadline, long before queueTimeout', async (t) => {
  const { app } = await setup(t, {
    deadlineHeader: 'x-request-timeout-ms',
    defaults: { retry: false, bulkhead: { maxConcurrent: 1, maxQueue: 2, queueTimeout: 10_000 } }
  })
  const holder = app.inject('/?delay=400')
  await sleep(20)
  const queued = await app.inject({ url: '/?delay=0', headers: { 'x-request-timeout-ms': '80' } })
  t.equal(queued.statusCode, 504)
  t.match(queued.json(), { code: 'HTTP_SERVICES_ERR_TIMEOUT', message: /deadline passed/ })
  t.match(app.httpServices.stats().api.bulkhead, { active: 1, queued: 0 })
  t.equal((await holder).statusCode, 200)
})

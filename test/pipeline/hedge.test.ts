import type { ServerResponse } from 'node:http'
import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

/**
 * A server whose n-th request is answered after `plan(n)`: `[ms, status]`, or `undefined` to hold it until the
 * client gives up. Records which requests were closed before an answer.
 */
async function planned (t: tap.Test, plan: (n: number) => [ms: number, status: number] | undefined): Promise<TestServer & { abandoned: number[] }> {
  const abandoned: number[] = []
  const timers = new Set<NodeJS.Timeout>()
  let n = 0
  const server = await startServer((_req, res: ServerResponse) => {
    const i = ++n
    res.once('close', () => { if (!res.writableFinished) abandoned.push(i) })
    const step = plan(i)
    if (step === undefined) return
    const timer = setTimeout(() => { timers.delete(timer); sendJson(res, step[1], { n: i }) }, step[0])
    timers.add(timer)
  })
  t.teardown(async () => {
    for (const timer of timers) clearTimeout(timer)
    await server.close()
  })
  return Object.assign(server, { abandoned })
}

t.test('a hedge wins over a slow first attempt, which is aborted', async (t) => {
  const server = await planned(t, (n) => n === 1 ? undefined : [0, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, hedge: { delay: 50 }, deadlineHeaders: true } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.same(await res.json(), { n: 2 }, 'the hedge answered')
  t.equal(res.attempts, 2)
  t.same(server.requests.map((r) => r.headers['x-attempt']), ['1', '2'], 'each attempt knows its number')
  await waitUntil('the slow attempt is closed upstream', () => server.abandoned.length === 1)
  t.same(server.abandoned, [1], 'the slow attempt was closed upstream')
  t.match(services.stats().api.retry, { hedges: 1 })
  t.equal(services.stats().api.attempts, 2)
})

t.test('an answer before the delay sends no hedge', async (t) => {
  const server = await planned(t, () => [0, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, hedge: { delay: 2000 } } } })
  await services.open()
  t.teardown(() => services.close())
  for (let i = 0; i < 3; i++) t.equal((await services.client('api').get('/x')).attempts, 1)
  t.equal(server.requests.length, 3)
  t.match(services.stats().api.retry, { hedges: 0 })
})

t.test('up to maxHedges hedges are sent, one per delay', async (t) => {
  const server = await planned(t, (n) => n < 3 ? undefined : [0, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, hedge: { delay: 30, maxHedges: 2 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.same(await res.json(), { n: 3 })
  t.equal(res.attempts, 3)
  await waitUntil('both slow attempts are closed upstream', () => server.abandoned.length === 2)
  t.same(server.abandoned.sort(), [1, 2], 'both slow attempts were aborted')
})

t.test('a retryable status loses to an attempt still in flight', async (t) => {
  const server = await planned(t, (n) => n === 1 ? [200, 503] : [300, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, hedge: { delay: 20 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200, 'the 503 came first but the hedge still answered')
  t.same(await res.json(), { n: 2 })
})

t.test('when every attempt fails, the call fails with the last failure and its attempts', async (t) => {
  const server = await planned(t, () => [200, 503])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, hedge: { delay: 10 } } } })
  await services.open()
  t.teardown(() => services.close())
  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 2 })
  t.equal(server.requests.length, 2)
})

t.test('hedged attempts under retries: the retry follows when all of them failed', async (t) => {
  const server = await planned(t, (n) => n <= 2 ? [200, 503] : [0, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 }, hedge: { delay: 20 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  const { n } = await res.json<{ n: number }>()
  t.ok(n >= 3, 'the two hedged attempts failed, a retry answered')
  t.ok(res.attempts >= 3, `attempts counts hedges and retries alike (${res.attempts})`)
  t.ok(server.requests.length <= res.attempts, 'no request the attempts do not count')
  t.same(server.requests.slice(0, 3).map((r) => r.url), ['/x', '/x', '/x'])
})

t.test('a POST is not hedged, unless it carries an Idempotency-Key', async (t) => {
  const server = await planned(t, () => [300, 201])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, hedge: { delay: 10 } } } })
  await services.open()
  t.teardown(() => services.close())
  t.equal((await services.client('api').post('/orders', { json: {} })).attempts, 1)
  t.equal(server.requests.length, 1, 'the POST was sent once')
  const keyed = await services.client('api').post('/orders', { json: {}, headers: { 'idempotency-key': 'k' } })
  t.equal(keyed.attempts, 2)
})

t.test('hedges spend the retry budget; none is sent when it is empty', async (t) => {
  const server = await planned(t, () => [300, 200])
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, hedge: { delay: 10 }, retry: { budget: { ratio: 0, minPerSecond: 0 } } } }
  })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 1)
  t.equal(server.requests.length, 1)
  t.match(services.stats().api.retry, { hedges: 0, budgetExhausted: 1 })
})

t.test('the caller\'s abort ends every attempt', async (t) => {
  const server = await planned(t, () => undefined)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, hedge: { delay: 10 } } } })
  await services.open()
  t.teardown(() => services.close())
  const controller = new AbortController()
  const call = services.client('api').get('/x', { signal: controller.signal })
  await waitUntil('the server has both attempts', () => server.requests.length === 2)
  controller.abort()
  await t.rejects(call, { code: 'HTTP_SERVICES_ERR_ABORTED' })
  await waitUntil('both attempts are closed upstream', () => server.abandoned.length === 2)
  t.same(server.abandoned.sort(), [1, 2], 'both attempts were closed upstream')
})

t.test('a call\'s own retry statusCodes decide which answers lose to an attempt in flight', async (t) => {
  const server = await planned(t, (n) => n === 1 ? [100, 503] : n === 2 ? [200, 200] : [0, 200])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, hedge: { delay: 20 } } } })
  await services.open()
  t.teardown(() => services.close())
  const api = services.client('api')
  const own = await api.get('/x', { retry: { statusCodes: [500] }, throwHttpErrors: false })
  t.equal(own.status, 503, 'a 503 the call does not retry is its answer, though a hedge was still in flight')
  t.equal(own.attempts, 2)
  await own.dump()

  const notFound = await planned(t, (n) => n === 1 ? [50, 404] : n === 2 ? [150, 200] : [0, 200])
  const other = createHttpServices({ services: { api: { baseUrl: notFound.url, retry: false, hedge: { delay: 20 } } } })
  await other.open()
  t.teardown(() => other.close())
  const res = await other.client('api').get('/x', { retry: { attempts: 1, baseDelay: 1, statusCodes: [404] } })
  t.same(await res.json(), { n: 2 }, 'a 404 the call retries loses to the hedge in flight')
  t.equal(res.attempts, 2)
  t.equal(notFound.requests.length, 2)
})

t.test('retries and hedges spend one budget: what one spends, the other cannot', async (t) => {
  // One retry or hedge in the window (0.1 a second over 10 s), whichever asks first; the breaker stays out of it. The
  // hedge delay leaves a loaded machine room: an immediate answer that took longer would ask for a hedge too.
  const options = { breaker: false, hedge: { delay: 200 }, retry: { baseDelay: 1, budget: { ratio: 0, minPerSecond: 0.1, window: 10000 } } } as const

  // A slow first answer: the hedge spends the budget, and a 503 after it is not retried.
  const hedgedFirst = await planned(t, (n) => n === 1 ? [1000, 200] : n === 2 ? [0, 200] : [0, 503])
  const one = createHttpServices({ services: { api: { baseUrl: hedgedFirst.url, ...options } } })
  await one.open()
  t.teardown(() => one.close())
  const hedged = await one.client('api').get('/x')
  t.equal(hedged.attempts, 2, 'the hedge went')
  await hedged.dump()
  const refused = await one.client('api').get('/y', { throwHttpErrors: false })
  t.equal(refused.status, 503, 'no retry left for the 503')
  t.equal(refused.attempts, 1)
  await refused.dump()
  t.equal(hedgedFirst.requests.length, 3)
  t.match(one.stats().api.retry, { retries: 0, hedges: 1, budgetExhausted: 1 })

  // A 503 first: the retry spends the budget, and a slow answer after it gets no hedge.
  const retriedFirst = await planned(t, (n) => n === 1 ? [0, 503] : n === 2 ? [0, 200] : [500, 200])
  const two = createHttpServices({ services: { api: { baseUrl: retriedFirst.url, ...options } } })
  await two.open()
  t.teardown(() => two.close())
  const retried = await two.client('api').get('/x')
  t.equal(retried.attempts, 2, 'the retry went')
  await retried.dump()
  const slow = await two.client('api').get('/y')
  t.equal(slow.attempts, 1, 'no hedge left for the slow answer')
  await slow.dump()
  t.equal(retriedFirst.requests.length, 3)
  t.match(two.stats().api.retry, { retries: 1, hedges: 0, budgetExhausted: 1 })
})

t.test('a failed answer that lost to another attempt is dropped: its connection is not left stuck', async (t) => {
  const closed: number[] = []
  let n = 0
  const server = await startServer((req, res) => {
    const i = ++n
    req.socket.once('close', () => closed.push(i))
    if (i === 1) {
      setTimeout(() => sendJson(res, 200, { n: i }), 150)
      return
    }
    // The hedge fails at once with a body too large to read: it loses to the first attempt, still in flight.
    const body = Buffer.alloc(512 * 1024, 'x')
    res.writeHead(503, { 'content-type': 'text/plain', 'content-length': body.length })
    res.end(body)
  })
  t.teardown(() => server.close())
  const services = createHttpServices({ services: { api: { baseUrl: server.url, breaker: false, retry: false, hedge: { delay: 10 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.same(await res.json(), { n: 1 })
  t.equal(res.attempts, 2)
  await waitUntil('the lost answer\'s connection is closed', () => closed.includes(2), 2000)
  t.notOk(closed.includes(1), 'the winner\'s connection is kept')
})

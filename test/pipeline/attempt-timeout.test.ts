import t from 'tap'
import { createHttpServices, TimeoutError } from '../../index'
import { sendJson, startServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

t.test('an attempt timeout aborts the upstream request, and the retry gets the answer', async (t) => {
  let firstClosed = false
  let hits = 0
  const server = await startServer((req, res) => {
    hits++
    if (hits === 1) {
      // Holds the first request: only the client's abort ends it.
      res.once('close', () => { firstClosed = true })
      return
    }
    sendJson(res, 200, { attempt: hits })
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, timeout: { attempt: 100 }, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  const { attempt } = await res.json<{ attempt: number }>()
  t.ok(attempt >= 2, `answered on attempt ${attempt}`)
  t.ok(res.attempts >= attempt, `the response counts ${res.attempts} attempts, every one the server saw`)
  await waitUntil('the server sees the first request closed', () => firstClosed)
  t.ok(firstClosed, 'the server saw the first request closed')
  t.same(services.stats().api.policies.includes('attemptTimeout'), true)
})

t.test('without retries the call fails with a TimeoutError of phase attempt', async (t) => {
  let closed = false
  const server = await startServer((_req, res) => { res.once('close', () => { closed = true }) })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, timeout: { attempt: 50 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await t.rejects(services.client('api').get('/x?key=secret'), {
    code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt', timeout: 50, statusCode: 504, url: '/x?key=***', message: /attempt timeout after 50 ms/
  })
  await waitUntil('the server sees the request closed', () => closed)
  t.ok(closed, 'the request was aborted upstream')
})

t.test('the attempt timeout covers the body of the attempt', async (t) => {
  let timer: NodeJS.Timeout | undefined
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first part,')
    timer = setTimeout(() => res.end('too late'), 5000)
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, timeout: { attempt: 500 } } } })
  await services.open()
  t.teardown(async () => { clearTimeout(timer); await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200, 'the headers came in time')
  const err = await res.text().catch((e: unknown) => e)
  t.ok(err instanceof TimeoutError, 'reading the body failed')
  t.equal((err as TimeoutError).phase, 'attempt')
})

t.test('a call sets its own attempt timeout, or turns the service\'s off with 0', async (t) => {
  let timer: NodeJS.Timeout | undefined
  const server = await startServer((_req, res) => { timer = setTimeout(() => sendJson(res, 200, { ok: true }), 150) })
  const services = createHttpServices({
    services: {
      plain: { baseUrl: server.url, retry: false },
      strict: { baseUrl: server.url, retry: false, timeout: { attempt: 50 } }
    }
  })
  await services.open()
  t.teardown(async () => { clearTimeout(timer); await services.close(); await server.close() })
  t.notOk(services.stats().plain.policies.includes('attemptTimeout'), 'a service without it has no such policy')
  t.equal((await services.client('plain').get('/x')).status, 200)
  await t.rejects(services.client('plain').get('/x', { timeout: { attempt: 50 } }), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt', timeout: 50 })
  await t.rejects(services.client('strict').get('/x'), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt' })
  t.equal((await services.client('strict').get('/x', { timeout: { attempt: 0 } })).status, 200)
})

t.test('a fast answer read to the end leaves no timer behind', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const services = createHttpServices({
    services: { plain: { baseUrl: server.url }, guarded: { baseUrl: server.url, timeout: { attempt: 60000 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  // undici keeps timers of its own (keep-alive, its coarse clock): count them with a service that has no attempt timeout.
  for (let i = 0; i < 5; i++) await services.client('plain').getJson('/x')
  const baseline = timers()
  for (let i = 0; i < 5; i++) t.same(await services.client('guarded').getJson('/x'), { ok: true })
  // A body emits 'close' a tick after its last byte was read.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(timers(), baseline, 'no attempt timer outlives its body')
})

t.test('attempts started at different times each get the whole limit, and each is aborted when it runs out', async (t) => {
  const open = new Set<import('node:http').ServerResponse>()
  const server = await startServer((_req, res) => { open.add(res); res.once('close', () => open.delete(res)) })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, timeout: { attempt: 150 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const started = performance.now()
  const calls = [0, 40, 80].map(async (delay) => {
    await new Promise((resolve) => setTimeout(resolve, delay))
    const t0 = performance.now()
    const err = await services.client('api').getJson('/hang').then(() => undefined, (e: unknown) => e)
    return { err, took: performance.now() - t0 }
  })
  const results = await Promise.all(calls)
  for (const [i, { err, took }] of results.entries()) {
    t.match(err, { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'attempt', timeout: 150 }, `call ${i} failed on its attempt limit`)
    // Timers fire a little early or late; an earlier attempt's expiry must not cut a later one short.
    t.ok(took >= 140, `call ${i} had its whole limit (${took.toFixed(0)} ms)`)
  }
  t.ok(performance.now() - started < 2000, 'every attempt was aborted on time')
  await waitUntil('the server sees every request closed', () => open.size === 0)
})

import { setImmediate as tick } from 'node:timers/promises'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import httpServices, { ConnectionError, createHttpServices, HttpStatusError, InvalidOptionsError, RequestAbortedError, type ServiceOptions } from '../../index'
import { closedPort, startServer, type SeenRequest } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

/**
 * An upstream that holds every response until the test releases it, so calls made together are all in flight at
 * once; it answers `{ n }` (the request's number) with the status `status`.
 */
async function heldServer (t: Test, status = 200) {
  const held: Array<{ res: ServerResponse, seen: SeenRequest }> = []
  const closed: SeenRequest[] = []
  let open = false
  const answer = (res: ServerResponse, seen: SeenRequest): void => {
    if (res.destroyed) return
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(JSON.stringify({ n: server.requests.indexOf(seen) + 1, auth: seen.headers.authorization ?? null }))
  }
  const server = await startServer((_req, res, seen) => {
    // Once released, later requests (calls that were not merged) are answered at once: a test fails on its counts.
    if (open) return answer(res, seen)
    held.push({ res, seen })
    res.on('close', () => { if (!res.writableFinished) closed.push(seen) })
  })
  t.teardown(async () => await server.close())
  const release = (): void => {
    open = true
    for (const { res, seen } of held.splice(0)) answer(res, seen)
  }
  return { server, release, held, closed }
}

async function setup (t: Test, url: string, options: Partial<ServiceOptions> = {}) {
  const services = createHttpServices({ services: { api: { baseUrl: url, retry: false, coalesce: true, ...options } } })
  await services.open()
  t.teardown(async () => await services.close())
  return { services, api: services.client('api') }
}

/** Releases the held responses once the first request arrived and a macrotask passed (every call joined by then). */
async function releaseWhenSent (up: Awaited<ReturnType<typeof heldServer>>, requests = 1): Promise<void> {
  await waitUntil('the upstream got the request', () => up.held.length >= requests)
  await tick()
  up.release()
}

t.test('50 identical GETs in flight make one upstream request, and each caller gets its own parsed body', async (t) => {
  const up = await heldServer(t)
  const { services, api } = await setup(t, up.server.url)
  const calls = Array.from({ length: 50 }, async () => await api.getJson<{ n: number }>('/users/1?full=1'))
  await releaseWhenSent(up)
  const bodies = await Promise.all(calls)
  t.equal(up.server.requests.length, 1, 'one request reached the upstream')
  t.same(bodies[0], { n: 1, auth: null })
  t.ok(bodies.every((b) => b.n === 1), 'every caller got the answer')
  bodies[0].n = 99
  t.equal(bodies[1].n, 1, 'each body is a parse of its own: one caller changing it changes no other')
  t.match(services.stats().api.coalesce, { inFlight: 0, merged: 49 })
})

t.test('streaming callers each read the whole body from their own response', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url)
  const calls = Array.from({ length: 10 }, async () => {
    const res = await api.get('/stream')
    const chunks: Buffer[] = []
    for await (const chunk of res.body) chunks.push(chunk as Buffer)
    return { status: res.status, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }
  })
  await releaseWhenSent(up)
  const results = await Promise.all(calls)
  t.equal(up.server.requests.length, 1)
  for (const r of results) {
    t.equal(r.status, 200)
    t.equal(r.text, '{"n":1,"auth":null}')
    t.equal(r.headers['content-type'], 'application/json')
  }
})

t.test('calls with different credentials, paths or query are not merged', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url)
  const calls = [
    api.getJson('/a', { headers: { authorization: 'Bearer one' } }),
    api.getJson('/a', { headers: { authorization: 'Bearer one' } }),
    api.getJson('/a', { headers: { authorization: 'Bearer two' } }),
    api.getJson('/a', { token: 'three' }),
    api.getJson('/a', { headers: { cookie: 'sid=1' } }),
    api.getJson('/a', { query: { page: 2 } }),
    api.getJson('/b')
  ]
  await releaseWhenSent(up, 6)
  const bodies = await Promise.all(calls) as Array<{ auth: string | null }>
  t.equal(up.server.requests.length, 6, 'only the two calls with the same Authorization shared a request')
  t.same(bodies.slice(0, 4).map((b) => b.auth), ['Bearer one', 'Bearer one', 'Bearer two', 'Bearer three'])
})

t.test('a non-GET is never merged, nor a call with its own timeout', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url)
  const calls = [
    ...Array.from({ length: 3 }, async () => await api.postJson('/p', { x: 1 })),
    ...Array.from({ length: 2 }, async () => await api.request('HEAD', '/p')),
    ...Array.from({ length: 2 }, async () => await api.getJson('/p', { timeout: 5000 }))
  ]
  await releaseWhenSent(up, 7)
  await Promise.all(calls)
  t.equal(up.server.requests.length, 7)
})

t.test('a caller who aborts leaves the others unharmed, and the upstream request goes on', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url)
  const ac = new AbortController()
  const aborted = api.getJson('/x', { signal: ac.signal })
  const others = Array.from({ length: 5 }, async () => await api.getJson('/x'))
  await waitUntil('the upstream got the request', () => up.held.length >= 1)
  ac.abort()
  await t.rejects(aborted, RequestAbortedError)
  up.release()
  const bodies = await Promise.all(others)
  t.same(bodies.map((b) => (b as { n: number }).n), [1, 1, 1, 1, 1])
  t.equal(up.server.requests.length, 1)
  t.same(up.closed, [], 'the shared request was not cancelled')
})

t.test('when every caller leaves, the shared request is cancelled and the next call starts afresh', async (t) => {
  const up = await heldServer(t)
  const { services, api } = await setup(t, up.server.url)
  const acs = [new AbortController(), new AbortController()]
  const calls = acs.map(async (ac) => await api.getJson('/x', { signal: ac.signal }))
  await waitUntil('the upstream got the request', () => up.held.length >= 1)
  for (const ac of acs) ac.abort()
  for (const call of calls) await t.rejects(call, RequestAbortedError)
  await waitUntil('the upstream saw the request go', () => up.closed.length === 1)
  t.match(services.stats().api.coalesce, { inFlight: 0 })
  const next = api.getJson('/x')
  await releaseWhenSent(up)
  t.same(await next, { n: 2, auth: null }, 'a new request')
})

t.test('a failure reaches every caller', async (t) => {
  const up = await heldServer(t, 503)
  const { api } = await setup(t, up.server.url)
  const calls = Array.from({ length: 4 }, async () => await api.getJson('/x'))
  await releaseWhenSent(up)
  const results = await Promise.allSettled(calls)
  t.equal(up.server.requests.length, 1)
  for (const r of results) {
    t.equal(r.status, 'rejected')
    t.ok((r as PromiseRejectedResult).reason instanceof HttpStatusError)
    t.match((r as PromiseRejectedResult).reason, { status: 503, service: 'api' })
  }
})

t.test('merged calls take one bulkhead slot: they sit above the limits', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url, { bulkhead: { maxConcurrent: 1, maxQueue: 0 } })
  const calls = Array.from({ length: 10 }, async () => await api.getJson('/x'))
  await releaseWhenSent(up)
  const results = await Promise.allSettled(calls)
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 10, 'none was refused by the bulkhead')
})

t.test('in a Fastify app, the inbound request id does not keep calls of two requests apart', async (t) => {
  const up = await heldServer(t)
  const app = Fastify()
  await app.register(httpServices, { services: { api: { baseUrl: up.server.url, retry: false, coalesce: true } } })
  app.get('/', async (request) => await request.httpClient('api').getJson('/shared'))
  t.teardown(async () => await app.close())
  await app.ready()
  const inbound = [app.inject('/'), app.inject('/')]
  await releaseWhenSent(up)
  const replies = await Promise.all(inbound)
  t.same(replies.map((r) => r.json()), [{ n: 1, auth: null }, { n: 1, auth: null }])
  t.equal(up.server.requests.length, 1)
  t.ok(up.server.requests[0].headers['x-request-id'], 'the request carries the first caller\'s id')
})

t.test('ignoreHeaders leaves more per-request headers out of a call\'s identity', async (t) => {
  const up = await heldServer(t)
  const { api } = await setup(t, up.server.url, { coalesce: { ignoreHeaders: ['X-Correlation-Id'] } })
  const calls = [1, 2, 3].map(async (i) => await api.getJson('/x', { headers: { 'x-correlation-id': `c${i}` } }))
  await releaseWhenSent(up)
  await Promise.all(calls)
  t.equal(up.server.requests.length, 1)
})

t.test('bad coalesce options fail at registration, naming the service and the key', async (t) => {
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', coalesce: 'yes' as unknown as boolean } } }),
    { message: /services\.api\.coalesce/ })
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', coalesce: { ignoreHeaders: ['bad header'] } } } }),
    InvalidOptionsError)
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', coalesce: { ignoreHeaders: ['bad header'] } } } }),
    { message: /services\.api\.coalesce\.ignoreHeaders/ })
})

t.test('coalescing is refused with a bearer function, and credentials cannot be ignored', async (t) => {
  const base = { baseUrl: 'http://127.0.0.1:1', coalesce: true }
  t.throws(() => createHttpServices({ services: { api: { ...base, auth: { bearer: () => 'per-caller' } } } }),
    { message: /services\.api\.coalesce: cannot be combined with auth\.bearer as a function/ })
  t.throws(() => createHttpServices({ defaults: { auth: { bearer: () => 'per-caller' } }, services: { api: base } }),
    { message: /services\.api\.coalesce/ }, 'from defaults too')
  for (const name of ['authorization', 'Cookie', 'proxy-authorization', 'X-Api-Key', 'api-key', 'x-auth-token']) {
    t.throws(() => createHttpServices({ services: { api: { ...base, coalesce: { ignoreHeaders: [name] } } } }),
      { message: /services\.api\.coalesce\.ignoreHeaders\[0\].*carries no credentials/ }, name)
  }
  t.throws(() => createHttpServices({ services: { api: { ...base, auth: { apiKey: { value: 'k', header: 'x-key' } }, coalesce: { ignoreHeaders: ['x-key'] } } } }),
    { message: /services\.api\.coalesce\.ignoreHeaders: cannot hold x-key/ })
  t.doesNotThrow(() => createHttpServices({ services: { api: { ...base, auth: { bearer: 'one-for-all' } } } }), 'a fixed token is fine')
})

t.test('a transport failure reaches every caller as an error of its own, of the same kind', async (t) => {
  const port = await closedPort()
  const { services, api } = await setup(t, `http://127.0.0.1:${port}`, { breaker: false })
  const results = await Promise.allSettled(Array.from({ length: 3 }, async () => await api.getJson('/x')))
  t.match(services.stats().api.coalesce, { merged: 2 }, 'the three calls shared one request')
  const errors = results.map((r) => (r as PromiseRejectedResult).reason as Error & { code: string })
  t.ok(errors.every((e) => e instanceof ConnectionError), 'each a ConnectionError')
  t.same(errors.map((e) => e.code), errors.map(() => errors[0].code))
  t.equal(new Set(errors).size, 3, 'three objects: one caller changing its error changes no other')
  t.equal(errors[1].message, errors[0].message)
})

t.test('the shared request does not carry the first caller\'s deadline', async (t) => {
  const up = await heldServer(t)
  const app = Fastify()
  await app.register(httpServices, {
    deadlineHeader: 'x-deadline',
    services: { api: { baseUrl: up.server.url, retry: false, coalesce: true, deadlineHeaders: true } }
  })
  app.get('/', async (request) => await request.httpClient('api').getJson('/shared'))
  t.teardown(async () => await app.close())
  await app.ready()
  const inbound = [app.inject({ url: '/', headers: { 'x-deadline': '20000' } }), app.inject('/')]
  await releaseWhenSent(up)
  const replies = await Promise.all(inbound)
  t.same(replies.map((r) => r.statusCode), [200, 200])
  t.equal(up.server.requests.length, 1)
  t.equal(up.server.requests[0].headers['x-request-timeout-ms'], undefined, 'no remaining time of one caller sent for all')
  t.equal(up.server.requests[0].headers['x-attempt'], '1')
})

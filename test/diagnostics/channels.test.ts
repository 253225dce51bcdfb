import diagnosticsChannel from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { ConnectionError, HttpStatusError, createHttpServices, type ServiceOptions } from '../../index'
import { kChannelNames } from '../../lib/diagnostics/channels'
import { Call } from '../../lib/call'
import {
  AttemptMessage, BreakerStateMessage, BulkheadMessage, CallMessage, FallbackServedMessage, HedgeFiredMessage, RateLimitMessage,
  RetryRefusedMessage, RetryScheduledMessage
} from '../../lib/diagnostics/messages'
import {
  publishBreakerState, publishFallbackServed, publishHedgeFired, publishRetryRefused, publishRetryScheduled
} from '../../lib/diagnostics/publish'
import { closedPort, sendJson, startServer, type Handler } from '../helpers/server'

interface Event {
  /** The channel's name without its prefix: `call:start`, `attempt:end` … */
  name: string
  message: Record<string, unknown>
  /** The message's fields when it was published (later events of the same message add to it). */
  seen: Record<string, unknown>
}

/** Subscribes to every channel for the test; each event is recorded with a copy of its message's fields. */
function record (t: Test): Event[] {
  const events: Event[] = []
  for (const name of kChannelNames) {
    const short = name.replace(/^(tracing:)?fastify-http-services:/, '')
    const onMessage = (message: unknown): void => {
      events.push({ name: short, message: message as Record<string, unknown>, seen: { ...(message as object) } })
    }
    diagnosticsChannel.subscribe(name, onMessage)
    t.teardown(() => { diagnosticsChannel.unsubscribe(name, onMessage) })
  }
  return events
}

async function setup (t: Test, handler: Handler, service: Partial<ServiceOptions> = {}) {
  const server = await startServer(handler)
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, ...service } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, services, api: services.client('api') }
}

const kSecret = 's3cret-token'

t.test('a secret written into the path itself (query or fragment) reaches no message: route stops before it, path redacts it', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 200, {}))
  const events = record(t)
  await api.getJson(`/search?api_key=${kSecret}#${kSecret}`)
  t.ok(events.length >= 5)
  for (const e of events) {
    t.notOk(JSON.stringify(e.seen).includes(kSecret), `${e.name}: no secret in ${JSON.stringify(e.seen)}`)
    if (e.name === 'call:start') t.match(e.seen, { route: '/search', path: '/search?api_key=***' })
  }
})

t.test('a call and its request: call start, end, asyncStart, asyncEnd; attempt start, headers, end; one message each', async (t) => {
  const { server, services, api } = await setup(t, (_req, res) => sendJson(res, 200, { id: 42 }))
  const events = record(t)
  const body = await api.getJson('/users/:id', { params: { id: 42 }, query: { token: kSecret, page: 2 }, headers: { authorization: `Bearer ${kSecret}` } })
  t.same(body, { id: 42 })
  t.same(events.map((e) => e.name), ['call:start', 'attempt:start', 'call:end', 'attempt:headers', 'attempt:end', 'call:asyncStart', 'call:asyncEnd'])

  const call = events[0].message
  t.ok(call instanceof CallMessage)
  for (const e of events.filter((e) => e.name.startsWith('call:'))) t.equal(e.message, call, 'the same message on every call event')
  t.match(events[0].seen, { service: 'api', method: 'GET', route: '/users/:id', path: '/users/42?token=***&page=***', duration: undefined, status: undefined })
  t.equal(typeof events[0].seen.startedAt, 'number')
  t.match(events[6].seen, { status: 200, attempts: 1, error: undefined })
  t.ok((events[6].seen.duration as number) >= 0)
  t.equal(call.registry, services, 'the registry, to tell apps apart')
  t.equal(typeof (call.log as { warn?: unknown }).warn, 'function', 'the call\'s logger')

  const attempt = events[1].message
  t.ok(attempt instanceof AttemptMessage)
  for (const e of events.filter((e) => e.name.startsWith('attempt:'))) t.equal(e.message, attempt, 'the same message on every attempt event')
  t.equal(attempt.call, call, 'an attempt knows its call')
  t.match(events[1].seen, { attempt: 1, method: 'GET', path: '/users/42?token=***&page=***', upstream: server.url, status: undefined, duration: undefined })
  t.match(events[3].seen, { status: 200, duration: undefined })
  t.ok((events[3].seen.timeToHeaders as number) >= 0)
  t.ok((events[4].seen.duration as number) >= (events[3].seen.timeToHeaders as number))
  t.equal(attempt.service, 'api')
  t.equal(attempt.registry, services)

  for (const e of events) {
    const text = JSON.stringify(e.message)
    t.notOk(text.includes(kSecret), `${e.name}: no secret in the message`)
    t.notOk(/authorization/i.test(text), `${e.name}: no request header`)
  }
  t.equal(server.requests[0].url, `/users/42?token=${kSecret}&page=2`, 'the request itself is unchanged')
})

t.test('a failing call: attempt error with the typed error; call error, then asyncStart and asyncEnd', async (t) => {
  const port = await closedPort()
  const services = createHttpServices({ services: { api: { baseUrl: `http://127.0.0.1:${port}`, retry: false } } })
  await services.open()
  t.teardown(async () => await services.close())
  const events = record(t)
  const err = await services.client('api').get('/x').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ConnectionError)
  t.same(events.map((e) => e.name), ['call:start', 'attempt:start', 'call:end', 'attempt:error', 'call:error', 'call:asyncStart', 'call:asyncEnd'])
  const attempt = events[3].seen
  t.equal(attempt.error, err, 'the attempt\'s error is the call\'s')
  t.match(attempt, { attempt: 1, upstream: `http://127.0.0.1:${port}`, status: undefined })
  t.match(attempt.error, { name: 'ConnectionError', code: 'HTTP_SERVICES_ERR_CONNECTION' })
  t.ok((attempt.duration as number) >= 0)
  t.match(events[4].seen, { error: err, attempts: undefined, status: undefined })
})

t.test('a status the call throws: the attempt ends with it, the call fails with HttpStatusError and keeps the status', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 404, { error: 'nope' }))
  const events = record(t)
  const err = await api.getJson('/x').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof HttpStatusError)
  t.same(events.map((e) => e.name), ['call:start', 'attempt:start', 'call:end', 'attempt:headers', 'attempt:end', 'call:error', 'call:asyncStart', 'call:asyncEnd'])
  t.match(events[4].seen, { status: 404, error: undefined })
  t.match(events[5].seen, { status: 404, error: err })
})

t.test('a streamed response: headers and end together, when the pipeline hands the response over', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 200, { ok: true }))
  const events = record(t)
  const res = await api.get('/x')
  t.same(await res.json(), { ok: true })
  t.same(events.map((e) => e.name), ['call:start', 'attempt:start', 'call:end', 'attempt:headers', 'attempt:end', 'call:asyncStart', 'call:asyncEnd'])
})

t.test('every redirect hop is an attempt:start of its own (same attempt number, its own path)', async (t) => {
  const { api } = await setup(t, (req, res) => {
    if (req.url === '/old') {
      res.writeHead(302, { location: '/new?code=abc' })
      res.end()
    } else {
      sendJson(res, 200, { ok: true })
    }
  }, { followRedirects: 2 })
  const events = record(t)
  await api.getJson('/old')
  const starts = events.filter((e) => e.name === 'attempt:start').map((e) => e.seen)
  t.match(starts, [{ attempt: 1, path: '/old' }, { attempt: 1, path: '/new?code=***' }])
  t.match(events.filter((e) => e.name === 'attempt:end').map((e) => e.seen.status), [302, 200])
})

t.test('the bulkhead: queued, admitted with the time waited, rejected when full and when the queue timeout passes', async (t) => {
  const { api } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, 200, {}), 60) }, { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeout: 1000 } })
  const events = record(t)
  const first = api.getJson('/a')
  const second = api.getJson('/b')
  const third = await api.getJson('/c').then(() => undefined, (e: unknown) => e)
  t.match(third, { code: 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED' })
  await Promise.all([first, second])
  const bulkhead = events.filter((e) => e.name.startsWith('bulkhead:'))
  t.same(bulkhead.map((e) => e.name), ['bulkhead:queued', 'bulkhead:rejected', 'bulkhead:admitted'])
  for (const e of bulkhead) t.ok(e.message instanceof BulkheadMessage)
  t.match(bulkhead[0].seen, { active: 1, queued: 1, maxConcurrent: 1, maxQueue: 1, waited: 0, reason: undefined })
  t.match((bulkhead[0].message.call as CallMessage).path, '/b')
  t.match(bulkhead[1].seen, { active: 1, queued: 1, reason: 'full', waited: 0 })
  t.match((bulkhead[1].message.call as CallMessage).path, '/c')
  t.match(bulkhead[2].seen, { active: 1, queued: 0, reason: undefined })
  t.ok((bulkhead[2].seen.waited as number) >= 30, `waited ${bulkhead[2].seen.waited as number} ms for the first call's slot`)

  const { api: slow } = await setup(t, (_req, res) => { setTimeout(() => sendJson(res, 200, {}), 200) }, { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeout: 40 } })
  const held = slow.getJson('/a')
  await slow.getJson('/b').catch(() => {})
  await held
  const timedOut = events.filter((e) => e.name === 'bulkhead:rejected').at(-1) as Event
  t.match(timedOut.seen, { reason: 'timeout', queued: 0 })
  t.ok((timedOut.seen.waited as number) >= 35, 'waited about queueTimeout')
})

t.test('the rate limiter: delayed with the wait, rejected with the wait it would need', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 200, {}), { rateLimit: { rate: 1, interval: 100, burst: 1, maxWait: 150 } })
  const events = record(t)
  await Promise.allSettled([api.getJson('/a'), api.getJson('/b'), api.getJson('/c')])
  const limited = events.filter((e) => e.name.startsWith('rate-limit:'))
  t.same(limited.map((e) => e.name), ['rate-limit:delayed', 'rate-limit:rejected'])
  for (const e of limited) t.ok(e.message instanceof RateLimitMessage)
  t.match(limited[0].seen, { maxWait: 150 })
  t.ok((limited[0].seen.delayMs as number) > 0 && (limited[0].seen.delayMs as number) <= 100)
  t.ok((limited[1].seen.delayMs as number) > 150, 'the third call would wait past maxWait')
})

t.test('a subscriber that throws does not break the call (Node reports its error as uncaught)', async (t) => {
  const { api } = await setup(t, (_req, res) => sendJson(res, 200, { ok: true }))
  const name = 'fastify-http-services:attempt:end'
  const thrower = (): void => { throw new Error('subscriber bug') }
  diagnosticsChannel.subscribe(name, thrower)
  t.teardown(() => { diagnosticsChannel.unsubscribe(name, thrower) })
  const uncaught: unknown[] = []
  const listeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => {
    process.removeListener('uncaughtException', onUncaught)
    for (const l of listeners) process.on('uncaughtException', l)
  })
  t.same(await api.getJson('/x'), { ok: true })
  await new Promise((resolve) => setImmediate(resolve))
  t.match(uncaught, [{ message: 'subscriber bug' }])
})

t.test('the functions retry, breaker, hedge and fallback publish with: their messages, and nothing while nobody listens', async (t) => {
  const services = createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:9' } } })
  const api = services.get('api')
  const ctx = new Call(api, 'GET', '/x?token=s3cret', '/x', {}, false, null, {}, api.log)
  publishRetryScheduled(ctx, 1, 3, 'status 503', 100, 'backoff')
  publishRetryRefused(ctx, 1, 3, 'status 503', 'budget')
  publishBreakerState(api, api.log, undefined, 'open', 5, 10, 'status 503', 30_000)
  publishHedgeFired(ctx, 2, 1, 50)
  publishFallbackServed(ctx, new Error('down'))
  t.equal(ctx.diagnostics, undefined, 'nobody listens: no message, not even the call\'s')

  const events = record(t)
  ctx.attempt = 2
  publishRetryScheduled(ctx, 1, 3, 'status 503', 100, 'backoff')
  publishRetryRefused(ctx, 3, 3, 'status 503', 'deadline', 250)
  publishRetryRefused(ctx, 3, 3, 'status 503', 'breaker', undefined, 1200)
  publishBreakerState(api, api.log, undefined, 'open', 5, 10, 'status 503', 30_000)
  publishHedgeFired(ctx, 2, 1, 50)
  const cause = new Error('down')
  publishFallbackServed(ctx, cause, 503)
  t.same(events.map((e) => e.name), ['retry:scheduled', 'retry:refused', 'retry:refused', 'breaker:state', 'hedge:fired', 'fallback:served'])
  const call = ctx.diagnostics as CallMessage
  t.ok(call instanceof CallMessage, 'the call\'s message, made on first need')
  for (const e of events) if (e.name !== 'breaker:state') t.equal(e.message.call, call, `${e.name}: the call's message`)
  t.ok(events[0].message instanceof RetryScheduledMessage)
  t.same(events[0].seen, { call, attempt: 1, maxAttempts: 3, reason: 'status 503', method: 'GET', path: '/x?token=***', upstream: 'http://127.0.0.1:9', delayMs: 100, delaySource: 'backoff' })
  t.ok(events[1].message instanceof RetryRefusedMessage)
  t.match(events[1].seen, { attempt: 3, refusal: 'deadline', delayMs: 250, retryAfterMs: undefined })
  t.match(events[2].seen, { refusal: 'breaker', delayMs: undefined, retryAfterMs: 1200 })
  t.ok(events[3].message instanceof BreakerStateMessage)
  t.same(events[3].seen, { service: 'api', upstream: undefined, state: 'open', failures: 5, calls: 10, lastFailure: 'status 503', resetAfter: 30_000, reopened: false, probes: undefined })
  t.equal(events[3].message.registry, services)
  t.equal(events[3].message.log, api.log, 'the breaker\'s logger')
  t.ok(events[4].message instanceof HedgeFiredMessage)
  t.same(events[4].seen, { call, attempt: 2, hedges: 1, delayMs: 50 })
  t.ok(events[5].message instanceof FallbackServedMessage)
  t.same(events[5].seen, { call, error: cause, status: 503 })
  for (const e of events) {
    t.equal(e.message.service, 'api')
    t.equal(e.message.registry, services)
  }
})

import Fastify from 'fastify'
import t from 'tap'
import httpServices, { createHttpServices } from '../../index'
import { parseRateLimitReset, parseRetryAfter, requestedDelay } from '../../lib/pipeline/retry-after'
import { sendJson, startServer } from '../helpers/server'

const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')

t.test('parseRetryAfter reads delta-seconds and HTTP-dates', async (t) => {
  t.equal(parseRetryAfter('3', now), 3000)
  t.equal(parseRetryAfter(' 0 ', now), 0)
  t.equal(parseRetryAfter('1.5', now), 1500)
  t.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30000, 'IMF-fixdate')
  t.equal(parseRetryAfter('Wednesday, 21-Oct-15 07:28:10 GMT', now), 10000, 'obsolete RFC 850 date')
  t.equal(parseRetryAfter('Wed, 21 Oct 2015 07:27:00 GMT', now), undefined, 'a date in the past (clock skew) asks for nothing')
  t.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', now), undefined, 'nor does a date of now')
  t.equal(parseRetryAfter(['2', '9'], now), 2000, 'the first of repeated headers')
  for (const bad of [undefined, '', '-5', 'soon', '1e3', '0x10']) t.equal(parseRetryAfter(bad, now), undefined, `${String(bad)} is ignored`)
})

t.test('parseRateLimitReset reads Unix seconds, Unix milliseconds and delta-seconds', async (t) => {
  t.equal(parseRateLimitReset(String(now / 1000 + 42), now), 42000, 'Unix seconds')
  t.equal(parseRateLimitReset(String(now + 1500), now), 1500, 'Unix milliseconds')
  t.equal(parseRateLimitReset('7', now), 7000, 'delta-seconds')
  t.equal(parseRateLimitReset(String(now / 1000 - 10), now), undefined, 'a reset in the past (clock skew) asks for nothing')
  t.equal(parseRateLimitReset(String(now - 10), now), undefined, 'in milliseconds too')
  t.equal(parseRateLimitReset('0', now), 0, 'a delta of 0 is an explicit "now"')
  t.equal(parseRateLimitReset('tomorrow', now), undefined)
  t.equal(parseRateLimitReset(undefined, now), undefined)
})

t.test('requestedDelay prefers Retry-After, and reads X-RateLimit-Reset only when the limit is spent', async (t) => {
  t.equal(requestedDelay(503, { 'retry-after': '2', 'x-ratelimit-reset': '9' }, now), 2000)
  t.equal(requestedDelay(429, { 'x-ratelimit-reset': '9' }, now), 9000, 'a 429')
  t.equal(requestedDelay(503, { 'x-ratelimit-reset': '9', 'x-ratelimit-remaining': '0' }, now), 9000, 'remaining 0')
  t.equal(requestedDelay(503, { 'x-ratelimit-reset': '9', 'x-ratelimit-remaining': '10' }, now), undefined, 'a limit not spent says nothing')
  t.equal(requestedDelay(503, {}, now), undefined)
})

/** A server that answers each request with the next of `replies` and records when each arrived. */
async function scripted (t: tap.Test, replies: Array<() => [number, Record<string, string>]>) {
  const arrivals: number[] = []
  const server = await startServer((_req, res) => {
    arrivals.push(Date.now())
    const [status, headers] = (replies.shift() ?? (() => [200, {}] as [number, Record<string, string>]))()
    sendJson(res, status, { status }, headers)
  })
  t.teardown(() => server.close())
  return { server, arrivals }
}

t.test('honours Retry-After in seconds', async (t) => {
  const { server, arrivals } = await scripted(t, [() => [503, { 'retry-after': '1' }]])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.ok(arrivals[1] - arrivals[0] >= 990, `the retry came ${arrivals[1] - arrivals[0]} ms later, not before 1 s`)
})

t.test('honours Retry-After as an HTTP-date', async (t) => {
  let date = 0
  const { server, arrivals } = await scripted(t, [() => {
    // The next whole second at least 400 ms away: an HTTP-date has no finer grain.
    date = Math.ceil((Date.now() + 400) / 1000) * 1000
    return [503, { 'retry-after': new Date(date).toUTCString() }]
  }])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.attempts, 2)
  t.ok(arrivals[1] >= date - 10, `the retry came ${date - arrivals[1]} ms before the date at most`)
})

t.test('honours X-RateLimit-Reset on a 429', async (t) => {
  const { server, arrivals } = await scripted(t, [() => [429, { 'x-ratelimit-reset': '1', 'x-ratelimit-remaining': '0' }]])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.attempts, 2)
  t.ok(arrivals[1] - arrivals[0] >= 990, `the retry came ${arrivals[1] - arrivals[0]} ms later`)
})

/** The gaps between the arrivals of requests, in ms. */
function gaps (arrivals: number[]): number[] {
  return arrivals.slice(1).map((at, i) => at - arrivals[i])
}

// 100, 200 and 400 ms without jitter: each gap is at least its delay (a timer never fires early by more than a
// millisecond or two); the upper bounds only catch a wait that has nothing to do with the backoff.
const kBackoff = { attempts: 3, baseDelay: 100, factor: 2, jitter: 'none' as const }

t.test('a Retry-After date in the past (clock skew) retries after the normal backoff, not back to back', async (t) => {
  const past = () => [503, { 'retry-after': new Date(Date.now() - 3_600_000).toUTCString() }] as [number, Record<string, string>]
  const { server, arrivals } = await scripted(t, [past, past, past])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, timeout: 10_000, retry: kBackoff } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.status, 200)
  t.equal(res.attempts, 4)
  const seen = gaps(arrivals)
  for (const [i, delay] of [100, 200, 400].entries()) {
    t.ok(seen[i] >= delay - 5 && seen[i] < delay + 2000, `retry ${i + 1} came ${seen[i]} ms after the last attempt (backoff ${delay} ms)`)
  }
})

t.test('an X-RateLimit-Reset in the past on a 429 retries after the normal backoff', async (t) => {
  const past = () => [429, { 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) - 60), 'x-ratelimit-remaining': '0' }] as [number, Record<string, string>]
  const { server, arrivals } = await scripted(t, [past, past])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, timeout: 10_000, retry: kBackoff } } })
  await services.open()
  t.teardown(() => services.close())
  const res = await services.client('api').get('/x')
  t.equal(res.attempts, 3)
  const seen = gaps(arrivals)
  for (const [i, delay] of [100, 200].entries()) {
    t.ok(seen[i] >= delay - 5 && seen[i] < delay + 2000, `retry ${i + 1} came ${seen[i]} ms after the last attempt (backoff ${delay} ms)`)
  }
})

t.test('a final status error with a Retry-After date in the past carries no retryAfter', async (t) => {
  const { server } = await scripted(t, [() => [503, { 'retry-after': new Date(Date.now() - 60_000).toUTCString() }]])
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(() => services.close())
  const err = await services.client('api').get('/x').catch((e: unknown) => e) as { status: number, retryAfter?: number, headers?: unknown }
  t.equal(err.status, 503)
  t.equal(err.retryAfter, undefined, 'no wait is passed on to our own caller')
  t.equal(err.headers, undefined)
})

t.test('a Retry-After beyond maxRetryAfter fails at once with retryAfter on the error', async (t) => {
  const { server } = await scripted(t, [() => [503, { 'retry-after': '120' }]])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(() => services.close())
  await t.rejects(services.client('api').get('/x'), {
    code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 1, retryAfter: 120, headers: { 'retry-after': '120' }
  })
  t.equal(server.requests.length, 1)
})

t.test('an X-RateLimit-Reset epoch beyond maxRetryAfter fails at once with retryAfter', async (t) => {
  const reset = Math.floor(Date.now() / 1000) + 300
  const { server } = await scripted(t, [() => [429, { 'x-ratelimit-reset': String(reset) }]])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: { baseDelay: 1, maxRetryAfter: 10000 } } } })
  await services.open()
  t.teardown(() => services.close())
  const err = await services.client('api').get('/x').catch((e: unknown) => e) as { status: number, retryAfter: number, attempts: number }
  t.equal(err.status, 429)
  t.equal(err.attempts, 1)
  t.ok(err.retryAfter >= 298 && err.retryAfter <= 301, `retryAfter ${err.retryAfter} is the time to the reset`)
  t.equal(server.requests.length, 1)
})

t.test('a Retry-After past the total timeout is not slept: the call fails at once', async (t) => {
  const { server } = await scripted(t, [() => [503, { 'retry-after': '2' }]])
  const services = createHttpServices({ services: { api: { baseUrl: server.url, timeout: 500, retry: { baseDelay: 1 } } } })
  await services.open()
  t.teardown(() => services.close())
  await t.rejects(services.client('api').get('/x'), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, retryAfter: 2, attempts: 1 })
  t.equal(server.requests.length, 1)
})

t.test('the retryAfter of a final status error reaches a Fastify reply as Retry-After', async (t) => {
  const { server } = await scripted(t, [() => [503, { 'retry-after': '90' }]])
  const app = Fastify()
  await app.register(httpServices, { services: { api: { baseUrl: server.url, retry: { maxRetryAfter: 1000 } } } })
  app.get('/', async (request) => (await request.httpClient('api').get('/x')).json())
  t.teardown(() => app.close())
  const reply = await app.inject('/')
  t.equal(reply.statusCode, 502)
  t.equal(reply.headers['retry-after'], '90')
})

import t from 'tap'
import {
  BulkheadRejectedError, CircuitOpenError, ClientClosedError, ConnectionError, createHttpServices, ForbiddenUrlError,
  HttpServicesError, HttpStatusError, InvalidOptionsError, InvalidRequestError, isHttpServicesError, RateLimitedError,
  RequestAbortedError, ResponseParseError, ResponseTooLargeError, TimeoutError, TlsError, TransportError,
  UnknownServiceError, WebhookDeliveryError, WebhookHandlerError, WebhookVerificationError
} from '../index'
import { redactPath, withRetryAfter } from '../lib/errors'
import pino from 'pino'
import { errorDetail } from '../lib/error-detail'
import { MockUnmatchedError } from '../testing'
import { startServer } from './helpers/server'

t.test('every error has a code, a statusCode Fastify can send, and is an HttpServicesError', async (t) => {
  const table: Array<[new (m: string) => Error, string, number]> = [
    [HttpStatusError, 'HTTP_SERVICES_ERR_STATUS', 502],
    [TimeoutError, 'HTTP_SERVICES_ERR_TIMEOUT', 504],
    [ConnectionError, 'HTTP_SERVICES_ERR_CONNECTION', 502],
    [TlsError, 'HTTP_SERVICES_ERR_TLS', 502],
    [ResponseTooLargeError, 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', 502],
    [ResponseParseError, 'HTTP_SERVICES_ERR_RESPONSE_PARSE', 502],
    [ForbiddenUrlError, 'HTTP_SERVICES_ERR_FORBIDDEN_URL', 500],
    [InvalidRequestError, 'HTTP_SERVICES_ERR_INVALID_REQUEST', 500],
    [UnknownServiceError, 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE', 500],
    [ClientClosedError, 'HTTP_SERVICES_ERR_CLIENT_CLOSED', 503],
    [RequestAbortedError, 'HTTP_SERVICES_ERR_ABORTED', 499],
    [InvalidOptionsError, 'HTTP_SERVICES_ERR_INVALID_OPTIONS', 500],
    [CircuitOpenError, 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', 503],
    [BulkheadRejectedError, 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED', 503],
    [RateLimitedError, 'HTTP_SERVICES_ERR_RATE_LIMITED', 503],
    [WebhookVerificationError, 'HTTP_SERVICES_ERR_WEBHOOK_VERIFY', 401],
    [WebhookDeliveryError, 'HTTP_SERVICES_ERR_WEBHOOK_DELIVERY', 502],
    [WebhookHandlerError, 'HTTP_SERVICES_ERR_WEBHOOK_HANDLER', 500]
  ]
  for (const [Class, code, statusCode] of table) {
    const e = new Class('something went wrong') as HttpServicesError
    t.equal(e.code, code, `${code}: code`)
    t.equal(e.statusCode, statusCode, `${code}: statusCode`)
    t.equal(e.message, 'something went wrong', `${code}: message as given`)
    t.ok(e instanceof HttpServicesError && e instanceof Error && isHttpServicesError(e), `${code}: an HttpServicesError`)
  }
  for (const Class of [TimeoutError, ConnectionError, TlsError]) {
    t.ok(new Class('x') instanceof TransportError, `${Class.name} is a TransportError`)
  }
  t.notOk(new HttpStatusError('x') instanceof TransportError)
  t.notOk(isHttpServicesError(new Error('x')))
  const cause = new Error('root')
  t.equal(new ConnectionError('x', { cause }).cause, cause, 'cause is kept')
})

t.test('redactPath replaces every query value and keeps the path and keys', async (t) => {
  t.equal(redactPath('/a/b'), '/a/b')
  t.equal(redactPath('/a?token=abc&x=1&flag'), '/a?token=***&x=***&flag')
  t.equal(redactPath('/a?'), '/a?')
  t.equal(redactPath('/a?k=v=w'), '/a?k=***')
})

t.test('withRetryAfter sets retryAfter in whole seconds and the retry-after header; ignores nonsense', async (t) => {
  const e = withRetryAfter(new CircuitOpenError('open'), 1.2)
  t.equal(e.retryAfter, 2)
  t.same(e.headers, { 'retry-after': '2' })
  const same = withRetryAfter(new CircuitOpenError('open'), Number.NaN)
  t.equal(same.retryAfter, undefined)
  t.equal(withRetryAfter(new CircuitOpenError('open'), -1).headers, undefined)
})

t.test('errorDetail reads the common error body shapes', async (t) => {
  t.equal(errorDetail({ type: 'about:blank', title: 'Not Found', detail: 'no invoice 7', status: 404 }, ''), 'Not Found: no invoice 7', 'RFC 9457 problem+json')
  t.equal(errorDetail({ title: 'Forbidden' }, ''), 'Forbidden', 'problem+json with a title only')
  t.equal(errorDetail({ error: { message: 'quota exceeded', code: 7 } }, ''), 'quota exceeded', '{ error: { message } }')
  t.equal(errorDetail({ error: 'invalid_grant', error_description: 'expired' }, ''), 'invalid_grant', '{ error }')
  t.equal(errorDetail({ detail: 'bad id' }, ''), 'bad id', '{ detail }')
  t.equal(errorDetail({ message: 'boom' }, ''), 'boom', '{ message }')
  t.equal(errorDetail({ other: 1 }, '{"other":1}'), undefined, 'a JSON body with none of them has no detail')
  t.equal(errorDetail(undefined, '  Service Unavailable \n'), 'Service Unavailable', 'text, trimmed')
  t.equal(errorDetail(undefined, 'x'.repeat(500)), 'x'.repeat(200), 'text, first 200 characters')
  t.equal(errorDetail(undefined, ''), undefined, 'an empty body has no detail')
})

t.test('errorDetail drops control characters, ANSI escapes and bidi overrides, and keeps at most 200 characters', async (t) => {
  t.equal(errorDetail({ message: 'line one\r\nX-Injected: 1\u0000 \u001b[31mred\u001b[0m \u202eevil' }, ''),
    'line one X-Injected: 1 red evil')
  t.equal(errorDetail(undefined, '\u001b]0;title\u0007 \u0085 ok \u009b31m'), 'ok', 'OSC, NEL and C1 CSI')
  t.equal(errorDetail({ detail: '\r\n\u0000' }, ''), undefined, 'nothing printable is no detail')
  const long = errorDetail({ message: '\n'.repeat(1000) + 'y'.repeat(1000) }, '') ?? ''
  t.ok(long.length <= 200, `capped (${long.length})`)
  const surrogate = errorDetail(undefined, 'a'.repeat(199) + '😀') ?? ''
  t.equal(surrogate, 'a'.repeat(199), 'never half of a surrogate pair')
})

t.test('every error is named after its class, for err.name, toString(), the stack and pino\'s err.type', async (t) => {
  const classes = {
    HttpServicesError, HttpStatusError, TransportError, TimeoutError, ConnectionError, TlsError, ResponseTooLargeError,
    ResponseParseError, ForbiddenUrlError, InvalidRequestError, UnknownServiceError, ClientClosedError,
    RequestAbortedError, InvalidOptionsError, CircuitOpenError, BulkheadRejectedError, RateLimitedError, MockUnmatchedError
  }
  for (const [name, Class] of Object.entries(classes)) {
    const e = new Class('went wrong')
    t.equal(e.name, name, `${name}: name`)
    t.equal(e.constructor.name, name, `${name}: constructor.name`)
    t.equal(e.constructor, Class, `${name}: constructor`)
    t.equal(String(e), `${name} [${e.code}]: went wrong`, `${name}: toString()`)
    t.match(e.stack, new RegExp(`^${name}: went wrong\n {4}at `), `${name}: the stack starts with the name and the caller`)
    t.notMatch(e.stack, /define-error/, `${name}: the stack starts at the caller`)
    t.equal(pino.stdSerializers.err(e).type, name, `${name}: pino's type`)
    t.ok(e instanceof Class && e instanceof HttpServicesError && e instanceof Error, `${name}: instanceof`)
    t.notOk(Object.keys(e).includes('name'), `${name}: name is not an own field`)
  }
  t.ok(new TimeoutError('x') instanceof TransportError, 'the hierarchy holds')
  t.notOk(new TimeoutError('x') instanceof ConnectionError)
  t.notOk(new HttpServicesError('x') instanceof HttpStatusError, 'a base is no subclass')
  const renamed = new ConnectionError('x')
  renamed.name = 'Custom'
  t.equal(renamed.name, 'Custom', 'name can still be set')
  t.equal(new ConnectionError('x', {} as never).message, 'x', 'options without cause are not formatted into the message')
})

t.test('cause is kept but not enumerable: JSON.stringify and field walkers do not see the raw upstream error', async (t) => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:8443'), { code: 'ECONNREFUSED', address: '10.1.2.3', data: 'raw bytes' })
  const e = new ConnectionError('GET api /x: connect ECONNREFUSED', { cause })
  t.equal(e.cause, cause, 'readable as err.cause')
  t.notOk(Object.keys(e).includes('cause'), 'not an enumerable field')
  t.notMatch(JSON.stringify(e), /10\.1\.2\.3|raw bytes|cause/)
  const logged = pino.stdSerializers.err(e) as unknown as Record<string, unknown>
  t.match(logged.message, /10\.1\.2\.3/, 'pino still logs the cause\'s message, for operators')
  t.equal(logged.cause, undefined)
  t.equal(new TimeoutError('no cause').cause, undefined)
  t.notOk(Object.hasOwn(new TimeoutError('no cause'), 'cause'), 'no cause field at all without one')
})

t.test('HttpStatusError carries status, response headers, detail and the parsed body from a real response', async (t) => {
  const bodies: Record<string, [number, string, string]> = {
    '/problem': [404, 'application/problem+json', JSON.stringify({ title: 'Not Found', detail: 'no invoice 7' })],
    '/nested': [429, 'application/json; charset=utf-8', JSON.stringify({ error: { message: 'slow down' } })],
    '/text': [500, 'text/plain', 'database on fire'],
    '/html': [502, 'text/html', '<html><body>Bad Gateway</body></html>'],
    '/empty': [503, 'text/plain', ''],
    '/huge': [500, 'application/json', JSON.stringify({ message: 'x'.repeat(100_000) })]
  }
  const server = await startServer((req, res) => {
    const [status, type, body] = bodies[req.url ?? ''] ?? [500, 'text/plain', '?']
    res.writeHead(status, { 'content-type': type, 'x-trace': 'abc' })
    res.end(body)
  })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const get = async (path: string): Promise<HttpStatusError> =>
    await api.get(path).then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as HttpStatusError)

  const problem = await get('/problem')
  t.ok(problem instanceof HttpStatusError)
  t.match(problem, { status: 404, statusCode: 502, detail: 'Not Found: no invoice 7', body: { title: 'Not Found' }, service: 'api', method: 'GET', url: '/problem', attempts: 1 })
  t.equal(problem.responseHeaders['x-trace'], 'abc')
  t.equal(problem.message, 'GET api /problem: downstream answered 404', 'the detail is the upstream\'s text: not in the message')
  t.match(await get('/nested'), { status: 429, detail: 'slow down', body: { error: { message: 'slow down' } } })
  t.match(await get('/text'), { status: 500, detail: 'database on fire', body: undefined })
  t.match(await get('/html'), { status: 502, detail: '<html><body>Bad Gateway</body></html>' })
  const empty = await get('/empty')
  t.equal(empty.detail, undefined)
  t.equal(empty.message, 'GET api /empty: downstream answered 503')
  const huge = await get('/huge')
  t.equal(huge.body, undefined, 'a body over 64 KiB is not parsed')
  t.ok((huge.detail ?? '').length <= 200, 'the detail stays short')
  t.equal(services.stats().api.inFlight, 0)
})

t.test('an unknown service name throws UnknownServiceError listing the known names', async (t) => {
  const services = createHttpServices({ services: { billing: { baseUrl: 'http://127.0.0.1:1' }, users: { baseUrl: 'http://127.0.0.1:2' } } })
  const err = (() => { try { services.client('biling') } catch (e) { return e as UnknownServiceError } })()
  t.ok(err instanceof UnknownServiceError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE', service: 'biling', known: ['billing', 'users'] })
  t.equal(err?.message, 'unknown service "biling"; known services: billing, users')
  t.throws(() => services.get('nope'), { code: 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE', message: /known services: billing, users/ })
  t.equal(services.has('billing'), true)
  t.equal(services.has('nope'), false)
  const none = createHttpServices({})
  t.throws(() => none.client('x'), { message: 'unknown service "x"; known services: (none)' })
})

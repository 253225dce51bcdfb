import t from 'tap'
import { InvalidOptionsError } from '../../lib/errors'
import { show, suggest, validateOptions } from '../../lib/config/validate'

const url = 'http://127.0.0.1:8080'

/** Options with one service `billing` made of `extra`. */
function billing (extra: Record<string, unknown>): unknown {
  return { services: { billing: { baseUrl: url, ...extra } } }
}

function rejects (t: tap.Test, options: unknown, key: string, message: string): void {
  let caught: unknown
  try {
    validateOptions(options)
  } catch (err) {
    caught = err
  }
  t.ok(caught instanceof InvalidOptionsError, 'throws InvalidOptionsError')
  const err = caught as InvalidOptionsError
  t.equal(err.message, message)
  t.equal(err.key, key)
  t.equal(err.code, 'HTTP_SERVICES_ERR_INVALID_OPTIONS')
}

t.test('accepts a complete, valid option set', async (t) => {
  const options = {
    configFile: 'config.yaml',
    closeTimeout: 0,
    requestIdHeader: false,
    requestDeadline: 5000,
    deadlineHeader: 'X-Request-Timeout-Ms',
    dispatcher: { dispatch () { return true } },
    defaults: {
      connections: 16,
      pipelining: 1,
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 60000,
      allowH2: true,
      headers: { 'User-Agent': 'me/1.0' },
      timeout: { connect: 1000, headers: 2000, body: 3000, total: 0 },
      tls: { rejectUnauthorized: false, ca: ['-----BEGIN CERTIFICATE-----', Buffer.from('x')], cert: 'cert.pem', key: Buffer.from('k'), passphrase: '', servername: 'a' },
      dns: { ttl: 1000, maxItems: 10, dualStack: false },
      maxResponseSize: 1024,
      followRedirects: 3,
      forwardHeaders: ['Accept-Language'],
      throwHttpErrors: false,
      passthroughStatus: true,
      retry: {
        attempts: 0,
        baseDelay: 0,
        maxDelay: 100,
        factor: 1.5,
        jitter: 'equal',
        delay: () => 1,
        statusCodes: [503],
        methods: ['get'],
        maxRetryAfter: 0,
        idempotencyKey: true,
        budget: false
      },
      breaker: { errorPercentage: 100, minimumRequests: 1, window: 1000, windowBuckets: 10, resetAfter: 1, closeAfter: 2 },
      bulkhead: { maxConcurrent: 1, maxQueue: 0, queueTimeout: 100 },
      rateLimit: { rate: 0.5, interval: 1000, burst: 1, maxWait: 0, adaptive: { floor: 1, ceiling: 2, increase: 0.5 } },
      hedge: { delay: 0, maxHedges: 2 },
      fallback: () => null,
      deadlineHeaders: { remaining: false, attempt: 'x-try' }
    },
    services: {
      billing: { baseUrl: ['https://a.internal:8443/api/', 'https://b.internal/api'], critical: true, retry: 2, breaker: true, dns: true },
      'users.v2-x_y': { baseUrl: url, timeout: 500, retry: false, bulkhead: false, rateLimit: { limit: 5, window: 1000 }, hedge: false },
      undefinedValues: { baseUrl: url, timeout: undefined, retry: { attempts: undefined } }
    }
  }
  t.doesNotThrow(() => validateOptions(options))
  t.doesNotThrow(() => validateOptions({}))
  t.doesNotThrow(() => validateOptions({ services: {} }), 'zero services is allowed')
  t.doesNotThrow(() => validateOptions({ prefix: '/v1', logLevel: 'warn', logSerializers: {} }), "Fastify's register options pass")
})

const cases: Array<[name: string, options: unknown, key: string, message: string]> = [
  ['options that are not an object', null, '', 'options: expected an object, got null'],
  ['a services map that is an array', { services: [] }, 'services', 'services: expected an object, got []'],
  ['a service that is not an object', { services: { billing: 'http://x' } }, 'services.billing', 'services.billing: expected an object, got "http://x"'],
  ['a service name starting with a digit', { services: { '1billing': { baseUrl: url } } }, 'services.1billing',
    'services.1billing: expected a service name (a letter, then letters, digits, "_", "." or "-"), got "1billing"'],
  ['a non-http baseUrl', billing({ baseUrl: 'ftp://x' }), 'services.billing.baseUrl', 'services.billing.baseUrl: expected an http(s) URL, got "ftp://x"'],
  ['a baseUrl that is not a URL', billing({ baseUrl: 'billing:8080' }), 'services.billing.baseUrl', 'services.billing.baseUrl: expected an http(s) URL, got "billing:8080"'],
  ['a relative baseUrl', billing({ baseUrl: '/api' }), 'services.billing.baseUrl', 'services.billing.baseUrl: expected an http(s) URL, got "/api"'],
  ['a baseUrl with credentials, password redacted', billing({ baseUrl: 'https://user:secret@billing.internal/api' }), 'services.billing.baseUrl',
    'services.billing.baseUrl: expected an http(s) URL without credentials (send them with headers or auth), got "https://***@billing.internal/api"'],
  ['a baseUrl with a query', billing({ baseUrl: 'http://x/api?key=1' }), 'services.billing.baseUrl',
    'services.billing.baseUrl: expected an http(s) URL without query or fragment, got "http://x/api?key=***"'],
  ['a baseUrl with a fragment', billing({ baseUrl: 'http://x/#top' }), 'services.billing.baseUrl',
    'services.billing.baseUrl: expected an http(s) URL without query or fragment, got "http://x/#top"'],
  ['an empty list of base URLs', billing({ baseUrl: [] }), 'services.billing.baseUrl', 'services.billing.baseUrl: expected a non-empty list of http(s) URLs, got []'],
  ['a bad URL in a list', billing({ baseUrl: [url, 'ws://x'] }), 'services.billing.baseUrl[1]', 'services.billing.baseUrl[1]: expected an http(s) URL, got "ws://x"'],
  ['a URL in a list that is not text', billing({ baseUrl: [url, 8080] }), 'services.billing.baseUrl[1]', 'services.billing.baseUrl[1]: expected an http(s) URL, got 8080'],
  ['base URLs with different base paths', billing({ baseUrl: ['http://a/api/', 'http://b/v2'] }), 'services.billing.baseUrl[1]',
    'services.billing.baseUrl[1]: expected the same base path as services.billing.baseUrl[0] ("/api"), got "http://b/v2"'],
  ['a missing baseUrl', { services: { billing: { connections: 2 } } }, 'services.billing.baseUrl',
    'services.billing.baseUrl: expected an http(s) URL or a non-empty list of http(s) URLs, got undefined'],
  ['a numeric baseUrl', billing({ baseUrl: 8080 }), 'services.billing.baseUrl',
    'services.billing.baseUrl: expected an http(s) URL or a non-empty list of http(s) URLs, got 8080'],
  ['a negative retry count', { services: { users: { baseUrl: url, retry: { attempts: -1 } } } }, 'services.users.retry.attempts',
    'services.users.retry.attempts: expected an integer >= 0, got -1'],
  ['a fractional retry shorthand', billing({ retry: 1.5 }), 'services.billing.retry', 'services.billing.retry: expected an integer >= 0, got 1.5'],
  ['a retry given as a string', billing({ retry: '3' }), 'services.billing.retry', 'services.billing.retry: expected an integer >= 0, false or an object, got "3"'],
  ['retry: true', billing({ retry: true }), 'services.billing.retry', 'services.billing.retry: expected an integer >= 0, false or an object, got true'],
  ['an unknown jitter', billing({ retry: { jitter: 'random' } }), 'services.billing.retry.jitter',
    'services.billing.retry.jitter: expected one of "full", "equal", "none", got "random"'],
  ['a status code out of range', billing({ retry: { statusCodes: [503, 700] } }), 'services.billing.retry.statusCodes[1]',
    'services.billing.retry.statusCodes[1]: expected an integer between 100 and 599, got 700'],
  ['status codes that are not a list', billing({ retry: { statusCodes: 503 } }), 'services.billing.retry.statusCodes',
    'services.billing.retry.statusCodes: expected an array of status codes (integers between 100 and 599), got 503'],
  ['a retry factor below 1', billing({ retry: { factor: 0.5 } }), 'services.billing.retry.factor', 'services.billing.retry.factor: expected a number >= 1, got 0.5'],
  ['a retry delay that is not a function', billing({ retry: { delay: 100 } }), 'services.billing.retry.delay', 'services.billing.retry.delay: expected a function, got 100'],
  ['retry budget: true', billing({ retry: { budget: true } }), 'services.billing.retry.budget', 'services.billing.retry.budget: expected false or an object, got true'],
  ['a negative budget ratio', billing({ retry: { budget: { ratio: -0.1 } } }), 'services.billing.retry.budget.ratio',
    'services.billing.retry.budget.ratio: expected a number >= 0, got -0.1'],
  ['a timeout given as text', { defaults: { timeout: { connect: '5s' } } }, 'defaults.timeout.connect',
    'defaults.timeout.connect: expected a positive number of milliseconds, got "5s"'],
  ['a zero phase timeout', billing({ timeout: { headers: 0 } }), 'services.billing.timeout.headers',
    'services.billing.timeout.headers: expected a positive number of milliseconds, got 0'],
  ['an infinite total timeout', billing({ timeout: { total: Infinity } }), 'services.billing.timeout.total',
    'services.billing.timeout.total: expected a number of milliseconds >= 0, got Infinity'],
  ['a queueTimeout longer than a timer waits', billing({ bulkhead: { maxConcurrent: 1, queueTimeout: 2_147_483_648 } }), 'services.billing.bulkhead.queueTimeout',
    'services.billing.bulkhead.queueTimeout: expected at most 2147483647 ms (about 24.8 days: Node\'s timers wait no longer), got 2147483648'],
  ['a timeout shorthand longer than a timer waits', billing({ timeout: 3e9 }), 'services.billing.timeout',
    'services.billing.timeout: expected at most 2147483647 ms (about 24.8 days: Node\'s timers wait no longer), got 3000000000'],
  ['a negative timeout shorthand', billing({ timeout: -1 }), 'services.billing.timeout', 'services.billing.timeout: expected a number of milliseconds >= 0, got -1'],
  ['a NaN timeout shorthand', billing({ timeout: NaN }), 'services.billing.timeout', 'services.billing.timeout: expected a number of milliseconds >= 0, got NaN'],
  ['a timeout that is neither', billing({ timeout: '1s' }), 'services.billing.timeout',
    'services.billing.timeout: expected a number of milliseconds >= 0 or an object, got "1s"'],
  ['zero connections', billing({ connections: 0 }), 'services.billing.connections', 'services.billing.connections: expected an integer >= 1, got 0'],
  ['allowH2 as text', billing({ allowH2: 'yes' }), 'services.billing.allowH2', 'services.billing.allowH2: expected a boolean, got "yes"'],
  ['a header name with a space', billing({ headers: { 'Bad Name': 'x' } }), 'services.billing.headers.Bad Name',
    'services.billing.headers.Bad Name: expected a header name (an HTTP token), got "Bad Name"'],
  ['a header value with CR LF', billing({ headers: { 'x-a': 'a\r\nSet-Cookie: x' } }), 'services.billing.headers.x-a',
    'services.billing.headers.x-a: expected a string without CR, LF or NUL, got "***"'],
  ['a header value with NUL', billing({ headers: { 'x-a': 'a\0' } }), 'services.billing.headers.x-a',
    'services.billing.headers.x-a: expected a string without CR, LF or NUL, got "***"'],
  ['a numeric header value', billing({ headers: { 'x-version': 2 } }), 'services.billing.headers.x-version',
    'services.billing.headers.x-version: expected a string without CR, LF or NUL, got a number'],
  ['forwardHeaders given as one string', billing({ forwardHeaders: 'accept-language' }), 'services.billing.forwardHeaders',
    'services.billing.forwardHeaders: expected an array of header names, got "accept-language"'],
  ['a bad forwarded header name', billing({ forwardHeaders: ['ok', 'not ok'] }), 'services.billing.forwardHeaders[1]',
    'services.billing.forwardHeaders[1]: expected a header name (an HTTP token), got "not ok"'],
  ['a breaker given as text', billing({ breaker: 'yes' }), 'services.billing.breaker', 'services.billing.breaker: expected a boolean or an object, got "yes"'],
  ['an error percentage of 0', billing({ breaker: { errorPercentage: 0 } }), 'services.billing.breaker.errorPercentage',
    'services.billing.breaker.errorPercentage: expected a number between 1 and 100, got 0'],
  ['an error percentage over 100', billing({ breaker: { errorPercentage: 150 } }), 'services.billing.breaker.errorPercentage',
    'services.billing.breaker.errorPercentage: expected a number between 1 and 100, got 150'],
  ['a breaker that never closes', billing({ breaker: { closeAfter: 0 } }), 'services.billing.breaker.closeAfter',
    'services.billing.breaker.closeAfter: expected an integer >= 1, got 0'],
  ['a bulkhead of 0', billing({ bulkhead: { maxConcurrent: 0 } }), 'services.billing.bulkhead.maxConcurrent',
    'services.billing.bulkhead.maxConcurrent: expected an integer >= 1, got 0'],
  ['a bulkhead without maxConcurrent', billing({ bulkhead: { maxQueue: 5 } }), 'services.billing.bulkhead.maxConcurrent',
    'services.billing.bulkhead.maxConcurrent: expected an integer >= 1, got undefined'],
  ['a number among the webhook secrets', billing({ webhook: { secret: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 123456] } }), 'services.billing.webhook.secret[1]',
    'services.billing.webhook.secret[1]: expected a non-empty string, got a number'],
  ['a list among the webhook secrets', billing({ webhook: { secret: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', ['s3cr3t']] } }), 'services.billing.webhook.secret[1]',
    'services.billing.webhook.secret[1]: expected a non-empty string, got a list'],
  ['bulkhead: true', billing({ bulkhead: true }), 'services.billing.bulkhead', 'services.billing.bulkhead: expected false or an object, got true'],
  ['a rate limit with both algorithms', billing({ rateLimit: { rate: 10, limit: 5, window: 1000 } }), 'services.billing.rateLimit',
    'services.billing.rateLimit: expected either rate (token bucket) or limit and window (sliding window), not both, got {"rate":10,"limit":5,"window":1000}'],
  ['a rate limit with no algorithm', billing({ rateLimit: { maxWait: 10 } }), 'services.billing.rateLimit',
    'services.billing.rateLimit: expected rate (token bucket) or limit and window (sliding window), got {"maxWait":10}'],
  ['a sliding window without its window', billing({ rateLimit: { limit: 5 } }), 'services.billing.rateLimit.window',
    'services.billing.rateLimit.window: expected a positive number of milliseconds (limit needs it), got undefined'],
  ['a sliding window without its limit', billing({ rateLimit: { window: 1000 } }), 'services.billing.rateLimit.limit',
    'services.billing.rateLimit.limit: expected an integer >= 1 (window needs it), got undefined'],
  ['a token bucket without its rate', billing({ rateLimit: { interval: 1000 } }), 'services.billing.rateLimit.rate',
    'services.billing.rateLimit.rate: expected a positive number (interval and burst need it), got undefined'],
  ['an adaptive floor above 1', billing({ rateLimit: { rate: 1, adaptive: { floor: 2 } } }), 'services.billing.rateLimit.adaptive.floor',
    'services.billing.rateLimit.adaptive.floor: expected a number > 0 and <= 1, got 2'],
  ['a negative hedge delay', billing({ hedge: { delay: -1 } }), 'services.billing.hedge.delay', 'services.billing.hedge.delay: expected a number of milliseconds >= 0, got -1'],
  ['a hedge without delay', billing({ hedge: {} }), 'services.billing.hedge.delay', 'services.billing.hedge.delay: expected a number of milliseconds >= 0, got undefined'],
  ['a fallback that is a value', billing({ fallback: 'n/a' }), 'services.billing.fallback', 'services.billing.fallback: expected a function, got "n/a"'],
  ['a dns ttl of 0', billing({ dns: { ttl: 0 } }), 'services.billing.dns.ttl', 'services.billing.dns.ttl: expected a positive number of milliseconds, got 0'],
  ['a CA that is a number', billing({ tls: { ca: 42 } }), 'services.billing.tls.ca',
    'services.billing.tls.ca: expected PEM text, a file path, a Buffer or a non-empty list of them, got 42'],
  ['an empty CA list', billing({ tls: { ca: [] } }), 'services.billing.tls.ca',
    'services.billing.tls.ca: expected a non-empty list of PEM texts, file paths or Buffers, got []'],
  ['a bad CA in a list', billing({ tls: { ca: ['a.pem', {}] } }), 'services.billing.tls.ca[1]',
    'services.billing.tls.ca[1]: expected PEM text, a file path or a Buffer, got {}'],
  ['an empty client certificate', billing({ tls: { cert: '' } }), 'services.billing.tls.cert',
    'services.billing.tls.cert: expected PEM text, a file path or a Buffer, got ""'],
  ['rejectUnauthorized as text', billing({ tls: { rejectUnauthorized: 'false' } }), 'services.billing.tls.rejectUnauthorized',
    'services.billing.tls.rejectUnauthorized: expected a boolean, got "false"'],
  ['a deadline header name with a space', billing({ deadlineHeaders: { remaining: 'time left' } }), 'services.billing.deadlineHeaders.remaining',
    'services.billing.deadlineHeaders.remaining: expected a header name (an HTTP token), got "time left"'],
  ['critical as a number', billing({ critical: 1 }), 'services.billing.critical', 'services.billing.critical: expected a boolean, got 1'],
  ['requestIdHeader: true', { requestIdHeader: true }, 'requestIdHeader', 'requestIdHeader: expected false or a header name (an HTTP token), got true'],
  ['a bad deadline header', { deadlineHeader: 'x deadline' }, 'deadlineHeader', 'deadlineHeader: expected a header name (an HTTP token), got "x deadline"'],
  ['an infinite close timeout', { closeTimeout: Infinity }, 'closeTimeout', 'closeTimeout: expected a number of milliseconds >= 0, got Infinity'],
  ['a negative request deadline', { requestDeadline: -5 }, 'requestDeadline', 'requestDeadline: expected a number of milliseconds >= 0, got -5'],
  ['an empty configFile', { configFile: '' }, 'configFile', 'configFile: expected a non-empty string, got ""'],
  ['a dispatcher without dispatch', { dispatcher: new Map() }, 'dispatcher',
    'dispatcher: expected an undici Dispatcher (an object with a dispatch function), got an instance of Map'],
  ['a typo in a service key', billing({ timout: 5000 }), 'services.billing.timout', 'services.billing.timout: unknown option (did you mean "timeout"?)'],
  ['a wrongly cased key', billing({ baseURL: url }), 'services.billing.baseURL', 'services.billing.baseURL: unknown option (did you mean "baseUrl"?)'],
  ['a typo in a nested key', billing({ retry: { attemps: 2 } }), 'services.billing.retry.attemps', 'services.billing.retry.attemps: unknown option (did you mean "attempts"?)'],
  ['a typo at the top level', { servics: {} }, 'servics', 'servics: unknown option (did you mean "services"?)'],
  ['baseUrl in defaults', { defaults: { baseUrl: url } }, 'defaults.baseUrl', 'defaults.baseUrl: unknown option (only a service may set it, under services.<name>)'],
  ['critical in defaults', { defaults: { critical: true } }, 'defaults.critical', 'defaults.critical: unknown option (only a service may set it, under services.<name>)'],
  ['an unknown key far from any', { defaults: { hedge: { delay: 1, zzzzz: 1 } } }, 'defaults.hedge.zzzzz',
    'defaults.hedge.zzzzz: unknown option (expected one of: delay, maxHedges)'],
  ['a swapped pair of letters in a key', billing({ retyr: 2 }), 'services.billing.retyr', 'services.billing.retyr: unknown option (did you mean "retry"?)'],
  ['a Host header to forward', billing({ forwardHeaders: ['accept-language', 'Host'] }), 'services.billing.forwardHeaders[1]',
    'services.billing.forwardHeaders[1]: expected a header name other than host, content-length and the hop-by-hop headers ' +
    '(they describe the inbound request and its connection, not the call), got "Host"'],
  ['a content-length to forward', billing({ forwardHeaders: ['content-length'] }), 'services.billing.forwardHeaders[0]',
    'services.billing.forwardHeaders[0]: expected a header name other than host, content-length and the hop-by-hop headers ' +
    '(they describe the inbound request and its connection, not the call), got "content-length"'],
  ['a hop-by-hop header to forward', { defaults: { forwardHeaders: ['Connection'] } }, 'defaults.forwardHeaders[0]',
    'defaults.forwardHeaders[0]: expected a header name other than host, content-length and the hop-by-hop headers ' +
    '(they describe the inbound request and its connection, not the call), got "Connection"'],
  ['a content-length for every call', billing({ headers: { 'Content-Length': '10' } }), 'services.billing.headers.Content-Length',
    'services.billing.headers.Content-Length: expected a header name other than content-length, transfer-encoding, keep-alive, ' +
    'upgrade, expect (undici frames each request\'s body and connection itself), got "Content-Length"'],
  ['a transfer-encoding for every call', { defaults: { headers: { 'transfer-encoding': 'chunked' } } }, 'defaults.headers.transfer-encoding',
    'defaults.headers.transfer-encoding: expected a header name other than content-length, transfer-encoding, keep-alive, ' +
    'upgrade, expect (undici frames each request\'s body and connection itself), got "transfer-encoding"'],
  ...['__proto__', 'constructor', 'prototype'].flatMap((k): Array<[string, unknown, string, string]> => {
    const problem = `the key "${k}" is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)`
    // `JSON.parse` makes an own `__proto__` key, as a file or an options object read from JSON has.
    const own = (json: string): unknown => JSON.parse(json.replace('KEY', k))
    return [
      [`a top-level ${k} key`, own(`{"KEY": {"services": {}}, "services": {"a": {"baseUrl": "${url}"}}}`), k, `${k}: ${problem}`],
      [`a ${k} service name`, own(`{"services": {"KEY": {"baseUrl": "${url}"}}}`), `services.${k}`, `services.${k}: ${problem}`],
      [`a nested ${k} key`, own(`{"services": {"billing": {"baseUrl": "${url}", "retry": {"KEY": {"attempts": 9}}}}}`),
        `services.billing.retry.${k}`, `services.billing.retry.${k}: ${problem}`],
      [`a ${k} header name`, own(`{"defaults": {"headers": {"KEY": "x"}}}`), `defaults.headers.${k}`, `defaults.headers.${k}: ${problem}`]
    ]
  }),
  // An object literal's `__proto__: {…}` sets its prototype instead: named as the key, not as "an instance of Object".
  ['a __proto__ key in an object literal', { services: { billing: { baseUrl: url, retry: { __proto__: { attempts: 9 } } } } },
    'services.billing.retry.__proto__',
    'services.billing.retry.__proto__: the key "__proto__" is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)'],
  ['a __proto__ key in the services literal', { services: { __proto__: { billing: { baseUrl: url } } } }, 'services.__proto__',
    'services.__proto__: the key "__proto__" is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)']
]

for (const [name, options, key, message] of cases) {
  t.test(`refuses ${name}`, async (t) => rejects(t, options, key, message))
}

t.test('reports the first problem only, in the order of the keys', async (t) => {
  rejects(t, billing({ connections: 0, pipelining: 0 }), 'services.billing.connections', 'services.billing.connections: expected an integer >= 1, got 0')
})

t.test('shows values briefly and without throwing', async (t) => {
  const circular: Record<string, unknown> = {}
  circular.self = circular
  t.equal(show(circular), 'an object')
  const list: unknown[] = []
  list.push(list)
  t.equal(show(list), 'an array')
  t.equal(show(Buffer.from('x')), 'a Buffer')
  t.equal(show(() => 1), 'a function')
  t.equal(show(10n), '10n')
  t.equal(show(Symbol('s')), 'Symbol(s)')
  t.equal(show(Object.create(null)), '{}')
  t.equal(show('x'.repeat(100)).length, 80)
  t.equal(show(Object.assign(Object.create({}) as object, {})), 'an instance of Object')
  t.equal(show(Object.create(Object.create(null))), 'an object')
})

t.test('suggests only names that are close', async (t) => {
  t.equal(suggest('rety', ['retry', 'hedge']), 'retry')
  t.equal(suggest('timout', ['timeout', 'retry']), 'timeout')
  t.equal(suggest('foo', ['retry', 'hedge']), undefined)
  t.equal(suggest('dsn', ['dns', 'tls']), undefined, 'a transposition in a 3-letter name is too far')
  t.equal(suggest('qurey', ['query', 'params']), 'query', 'a transposition in a longer name is one edit')
  t.equal(suggest('tiemout', ['timeout', 'retry']), 'timeout')
  t.equal(suggest('qyreu', ['query']), undefined, 'two transpositions in a 5-letter name are too far')
})

t.test('a literal __proto__ is named as the key; an instance of a class is still shown as one', async (t) => {
  rejects(t, billing({ tls: { __proto__: { rejectUnauthorized: false } } }), 'services.billing.tls.__proto__',
    'services.billing.tls.__proto__: the key "__proto__" is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)')
  class Retry { attempts = 2 }
  rejects(t, billing({ retry: new Retry() }), 'services.billing.retry', 'services.billing.retry: expected an integer >= 0, false or an object, got an instance of Retry')
})

t.test('spans that never become a timer\'s delay (windows, a DNS TTL) may be longer than 24.8 days', async (t) => {
  const month = 30 * 24 * 3600 * 1000
  t.doesNotThrow(() => validateOptions(billing({ rateLimit: { limit: 10_000, window: month } })))
  t.doesNotThrow(() => validateOptions(billing({ rateLimit: { rate: 10_000, interval: month } })))
  t.doesNotThrow(() => validateOptions(billing({ retry: { budget: { window: month } } })))
  t.doesNotThrow(() => validateOptions(billing({ dns: { ttl: month } })))
  t.throws(() => validateOptions(billing({ rateLimit: { limit: 1, window: 1000, maxWait: month } })), { key: 'services.billing.rateLimit.maxWait' } as never)
})

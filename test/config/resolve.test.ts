import t from 'tap'
import { join } from 'node:path'
import { InvalidOptionsError } from '../../lib/errors'
import { builtInDefaults, mergeOptions, resolveOptions } from '../../lib/config/resolve'
import type { ResolvedService } from '../../lib/config/resolved'
import type { HttpServicesOptions, ServiceOptions } from '../../lib/config/types'
import * as config from '../../lib/config'

const url = 'http://127.0.0.1:8080'

/** The resolved `svc` service of `service` under `defaults`. */
function one (service: Partial<ServiceOptions>, defaults?: HttpServicesOptions['defaults']): ResolvedService {
  const resolved = resolveOptions({ defaults, services: { svc: { baseUrl: url, ...service } } })
  return resolved.services.get('svc') as ResolvedService
}

function catchError (fn: () => unknown): InvalidOptionsError {
  try {
    fn()
  } catch (err) {
    if (err instanceof InvalidOptionsError) return err
    throw err
  }
  throw new Error('expected an InvalidOptionsError')
}

t.test('fills every built-in default', async (t) => {
  const resolved = resolveOptions({ services: { billing: { baseUrl: 'http://127.0.0.1:8080' } } })
  t.equal(resolved.closeTimeout, 10000)
  t.equal(resolved.requestIdHeader, 'x-request-id')
  t.equal(resolved.requestDeadline, 0)
  t.equal(resolved.deadlineHeader, false)
  t.equal(resolved.dispatcher, undefined)
  t.same([...resolved.services.keys()], ['billing'])
  t.strictSame(resolved.services.get('billing'), {
    name: 'billing',
    origins: ['http://127.0.0.1:8080'],
    basePath: '',
    connections: 64,
    pipelining: 1,
    keepAliveTimeout: 4000,
    keepAliveMaxTimeout: 60000,
    allowH2: false,
    headers: { 'accept-encoding': 'gzip, deflate, br' },
    timeout: { connect: 5000, headers: 30000, body: 30000, total: 0 },
    tls: undefined,
    dns: undefined,
    maxResponseSize: 10485760,
    decompress: true,
    followRedirects: 0,
    forwardHeaders: [],
    throwHttpErrors: true,
    passthroughStatus: false,
    retry: {
      attempts: 3,
      baseDelay: 500,
      maxDelay: 30000,
      factor: 2,
      jitter: 'full',
      delay: undefined,
      statusCodes: [408, 429, 500, 502, 503, 504],
      methods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'],
      maxRetryAfter: 60000,
      idempotencyKey: false,
      budget: { ratio: 0.2, minPerSecond: 3, window: 10000 }
    },
    breaker: { errorPercentage: 50, minimumRequests: 20, window: 10000, windowBuckets: 10, resetAfter: 30000, closeAfter: 1 },
    bulkhead: undefined,
    rateLimit: undefined,
    hedge: undefined,
    coalesce: undefined,
    cache: undefined,
    fallback: undefined,
    deadlineHeaders: undefined,
    auth: undefined,
    critical: false
  })
})

t.test('allows zero services, and no options at all', async (t) => {
  t.equal(resolveOptions({ services: {} }).services.size, 0)
  t.equal(resolveOptions({}).services.size, 0)
  t.equal(resolveOptions().services.size, 0)
})

t.test('resolves top-level options and lower-cases header names', async (t) => {
  const dispatcher = { dispatch: () => true } as unknown as HttpServicesOptions['dispatcher']
  const resolved = resolveOptions({ closeTimeout: 0, requestIdHeader: 'X-Correlation-Id', requestDeadline: 3000, deadlineHeader: 'X-Deadline-Ms', dispatcher })
  t.equal(resolved.closeTimeout, 0)
  t.equal(resolved.requestIdHeader, 'x-correlation-id')
  t.equal(resolved.requestDeadline, 3000)
  t.equal(resolved.deadlineHeader, 'x-deadline-ms')
  t.equal(resolved.dispatcher, dispatcher)
  t.equal(resolveOptions({ requestIdHeader: false }).requestIdHeader, false)
})

t.test('throws the validation error for bad options', async (t) => {
  const err = catchError(() => resolveOptions({ services: { billing: { baseUrl: 'ftp://x' } } }))
  t.equal(err.message, 'services.billing.baseUrl: expected an http(s) URL, got "ftp://x"')
  t.equal(err.key, 'services.billing.baseUrl')
  t.equal(catchError(() => resolveOptions(null as unknown as HttpServicesOptions)).message, 'options: expected an object, got null')
})

t.test('splits baseUrl into origins and a base path', async (t) => {
  const where = (s: ResolvedService): unknown => ({ origins: s.origins, basePath: s.basePath })
  t.same(where(one({ baseUrl: 'https://billing.internal:443/api/v1/' })), { origins: ['https://billing.internal'], basePath: '/api/v1' })
  t.same(where(one({ baseUrl: 'http://users:8080/' })), { origins: ['http://users:8080'], basePath: '' })
  t.same(where(one({ baseUrl: 'http://[::1]:9000/x' })), { origins: ['http://[::1]:9000'], basePath: '/x' })
  t.same(where(one({ baseUrl: ['http://a:1/api', 'http://b:2/api/'] })), { origins: ['http://a:1', 'http://b:2'], basePath: '/api' })
})

t.test('merges defaults under each service, the service winning one level deep', async (t) => {
  const defaults = {
    connections: 8,
    headers: { 'User-Agent': 'gw/1', 'X-Team': 'core' },
    timeout: { connect: 1000, total: 9000 },
    retry: { attempts: 5, baseDelay: 100 },
    breaker: { errorPercentage: 25 },
    dns: { ttl: 500 },
    tls: { rejectUnauthorized: false, servername: 'defaults' },
    forwardHeaders: ['Accept-Language']
  }
  const s = one({
    connections: 2,
    headers: { 'x-team': 'billing' },
    timeout: { headers: 2000 },
    retry: { maxDelay: 1000 },
    breaker: { resetAfter: 5000 },
    dns: { maxItems: 5 },
    tls: { servername: 'svc' },
    forwardHeaders: ['X-Tenant']
  }, defaults)
  t.equal(s.connections, 2)
  t.same(s.headers, { 'user-agent': 'gw/1', 'x-team': 'billing', 'accept-encoding': 'gzip, deflate, br' })
  t.same(s.timeout, { connect: 1000, headers: 2000, body: 30000, total: 9000 })
  t.match(s.retry, { attempts: 5, baseDelay: 100, maxDelay: 1000, factor: 2 })
  t.match(s.breaker, { errorPercentage: 25, resetAfter: 5000, minimumRequests: 20 })
  t.same(s.dns, { ttl: 500, maxItems: 5, dualStack: true })
  t.same(s.tls, { rejectUnauthorized: false, servername: 'svc' })
  t.same(s.forwardHeaders, ['x-tenant'], 'arrays replace')

  const inherited = one({}, defaults)
  t.equal(inherited.connections, 8)
  t.same(inherited.forwardHeaders, ['accept-language'])
})

t.test('ignores undefined service keys when merging', async (t) => {
  const s = one({ connections: undefined, timeout: { connect: undefined, headers: 7 }, retry: { attempts: undefined } },
    { connections: 4, timeout: { connect: 10 }, retry: { attempts: 6 } })
  t.equal(s.connections, 4)
  t.same(s.timeout, { connect: 10, headers: 7, body: 30000, total: 0 })
  t.equal(s.retry?.attempts, 6)
  t.same(one({ timeout: { connect: undefined } }).timeout, builtInDefaults.timeout)
})

t.test('reads timeout: n as the total timeout, keeping the phase timeouts', async (t) => {
  t.same(one({ timeout: 2500 }).timeout, { connect: 5000, headers: 30000, body: 30000, total: 2500 })
  t.same(one({ timeout: 2500 }, { timeout: { connect: 100 } }).timeout, { connect: 100, headers: 30000, body: 30000, total: 2500 })
  t.same(one({ timeout: { body: 1 } }, { timeout: 700 }).timeout, { connect: 5000, headers: 30000, body: 1, total: 700 })
})

t.test('reads retry: n as attempts, and false or 0 as no retries', async (t) => {
  t.match(one({ retry: 1 }).retry, { attempts: 1, baseDelay: 500 })
  t.match(one({ retry: 1 }, { retry: { baseDelay: 10 } }).retry, { attempts: 1, baseDelay: 10 })
  t.equal(one({ retry: false }).retry, undefined)
  t.equal(one({ retry: 0 }).retry, undefined)
  t.equal(one({ retry: { attempts: 0 } }).retry, undefined)
  t.equal(one({}, { retry: false }).retry, undefined)
  t.equal(one({ retry: { baseDelay: 1 } }, { retry: { attempts: 0 } }).retry, undefined)
  t.match(one({ retry: { baseDelay: 1 } }, { retry: false }).retry, { attempts: 3, baseDelay: 1 })
  t.equal(one({ retry: false }, { retry: { attempts: 4 } }).retry, undefined)
})

t.test('upper-cases and dedupes retry methods, and keeps the delay function', async (t) => {
  const delay = (): number => 1
  const r = one({ retry: { methods: ['get', 'GET', 'post'], statusCodes: [503], delay, jitter: 'none', idempotencyKey: true } }).retry
  t.same(r?.methods, ['GET', 'POST'])
  t.same(r?.statusCodes, [503])
  t.equal(r?.delay, delay)
  t.equal(r?.jitter, 'none')
  t.equal(r?.idempotencyKey, true)
})

t.test('turns the retry budget on by default, and off with budget: false', async (t) => {
  t.same(one({}).retry?.budget, { ratio: 0.2, minPerSecond: 3, window: 10000 })
  t.same(one({ retry: { budget: { ratio: 0.5 } } }).retry?.budget, { ratio: 0.5, minPerSecond: 3, window: 10000 })
  t.same(one({ retry: { budget: { ratio: undefined, window: 1000 } } }).retry?.budget, { ratio: 0.2, minPerSecond: 3, window: 1000 })
  t.equal(one({ retry: { budget: false } }).retry?.budget, undefined)
})

t.test('turns breaker: true into the defaults and false into none', async (t) => {
  t.same(one({ breaker: true }).breaker, { errorPercentage: 50, minimumRequests: 20, window: 10000, windowBuckets: 10, resetAfter: 30000, closeAfter: 1 })
  t.same(one({}).breaker, one({ breaker: true }).breaker, 'on by default')
  t.equal(one({ breaker: false }).breaker, undefined)
  t.equal(one({ breaker: false }, { breaker: true }).breaker, undefined)
  t.match(one({ breaker: true }, { breaker: { resetAfter: 1 } }).breaker, { resetAfter: 1, errorPercentage: 50 })
})

t.test('turns dns: true into the defaults', async (t) => {
  t.same(one({ dns: true }).dns, { ttl: 10000, maxItems: 100, dualStack: true })
  t.equal(one({ dns: false }, { dns: true }).dns, undefined)
})

t.test('fills bulkhead and hedge defaults', async (t) => {
  t.same(one({ bulkhead: { maxConcurrent: 4 } }).bulkhead, { maxConcurrent: 4, maxQueue: 0, queueTimeout: 10000 })
  t.same(one({ bulkhead: { maxConcurrent: 4 } }, { bulkhead: { maxConcurrent: 1, maxQueue: 9 } }).bulkhead, { maxConcurrent: 4, maxQueue: 9, queueTimeout: 10000 })
  t.equal(one({ bulkhead: false }, { bulkhead: { maxConcurrent: 1 } }).bulkhead, undefined)
  t.same(one({ hedge: { delay: 50 } }).hedge, { delay: 50, maxHedges: 1 })
  t.equal(one({ hedge: false }).hedge, undefined)
})

t.test('resolves a token-bucket rate limit', async (t) => {
  t.same(one({ rateLimit: { rate: 10 } }).rateLimit, { kind: 'token-bucket', rate: 10, interval: 1000, burst: 10, maxWait: 0, adaptive: undefined })
  t.same(one({ rateLimit: { rate: 5, interval: 60000, burst: 20, maxWait: 100 } }).rateLimit,
    { kind: 'token-bucket', rate: 5, interval: 60000, burst: 20, maxWait: 100, adaptive: undefined })
})

t.test('resolves a sliding-window rate limit', async (t) => {
  t.same(one({ rateLimit: { limit: 100, window: 60000 } }).rateLimit,
    { kind: 'sliding-window', rate: 100, interval: 60000, burst: 100, maxWait: 0, adaptive: undefined })
  t.equal(one({ rateLimit: false }, { rateLimit: { rate: 1 } }).rateLimit, undefined)
})

t.test('lets a service switch the rate limit algorithm of defaults', async (t) => {
  t.same(one({ rateLimit: { limit: 5, window: 1000 } }, { rateLimit: { rate: 10, burst: 2, maxWait: 50 } }).rateLimit,
    { kind: 'sliding-window', rate: 5, interval: 1000, burst: 5, maxWait: 50, adaptive: undefined })
  t.same(one({ rateLimit: { rate: 3 } }, { rateLimit: { limit: 5, window: 1000 } }).rateLimit,
    { kind: 'token-bucket', rate: 3, interval: 1000, burst: 3, maxWait: 0, adaptive: undefined })
  t.same(one({ rateLimit: { rate: 3 } }, { rateLimit: { rate: 1, interval: 10 } }).rateLimit,
    { kind: 'token-bucket', rate: 3, interval: 10, burst: 3, maxWait: 0, adaptive: undefined })
})

t.test('turns adaptive: true into the adaptive defaults', async (t) => {
  t.same(one({ rateLimit: { rate: 1, adaptive: true } }).rateLimit?.adaptive, { floor: 0.1, ceiling: 1, increase: 0.05 })
  t.same(one({ rateLimit: { rate: 1, adaptive: { floor: 0.5 } } }).rateLimit?.adaptive, { floor: 0.5, ceiling: 1, increase: 0.05 })
  t.equal(one({ rateLimit: { rate: 1, adaptive: false } }).rateLimit?.adaptive, undefined)
})

t.test('turns deadlineHeaders: true into the default header names', async (t) => {
  t.same(one({ deadlineHeaders: true }).deadlineHeaders, { remaining: 'x-request-timeout-ms', attempt: 'x-attempt' })
  t.same(one({ deadlineHeaders: { remaining: 'X-Budget', attempt: false } }).deadlineHeaders, { remaining: 'x-budget', attempt: false })
  t.equal(one({ deadlineHeaders: { remaining: false, attempt: false } }).deadlineHeaders, undefined, 'both off is no policy')
  t.equal(one({ deadlineHeaders: false }, { deadlineHeaders: true }).deadlineHeaders, undefined)
})

t.test('copies the remaining service options', async (t) => {
  const fallback = (): null => null
  const s = one({ critical: true, fallback, pipelining: 4, keepAliveTimeout: 1, keepAliveMaxTimeout: 2, allowH2: true, maxResponseSize: 3, followRedirects: 2, throwHttpErrors: false, passthroughStatus: true })
  t.match(s, { critical: true, pipelining: 4, keepAliveTimeout: 1, keepAliveMaxTimeout: 2, allowH2: true, maxResponseSize: 3, followRedirects: 2, throwHttpErrors: false, passthroughStatus: true })
  t.equal(s.fallback, fallback)
  t.same(one({ forwardHeaders: ['X-A', 'x-a'] }).forwardHeaders, ['x-a'])
})

t.test('reads tls file paths and passes PEM text and Buffers through', async (t) => {
  const pem = (label: string): string => `-----BEGIN ${label}-----\nMIIB\n-----END ${label}-----\n`
  const dir = t.testdir({ 'ca.pem': pem('CERTIFICATE'), 'cert.pem': pem('CERTIFICATE'), 'key.pem': pem('PRIVATE KEY') })
  const inline = pem('CERTIFICATE')
  const buffer = Buffer.from('der-ish')
  const s = one({ tls: { ca: [join(dir, 'ca.pem'), inline, buffer], cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), passphrase: 'pw', servername: 'api' } })
  t.same(s.tls?.ca, [Buffer.from(pem('CERTIFICATE')), inline, buffer])
  t.same(s.tls?.cert, Buffer.from(pem('CERTIFICATE')))
  t.same(s.tls?.key, Buffer.from(pem('PRIVATE KEY')))
  t.equal(s.tls?.passphrase, 'pw')
  t.equal(s.tls?.servername, 'api')
  t.equal(s.tls?.rejectUnauthorized, true)
  t.same(one({ tls: { ca: inline } }).tls, { rejectUnauthorized: true, ca: [inline] })
  t.same(one({ tls: { cert: buffer, key: inline } }).tls, { rejectUnauthorized: true, cert: buffer, key: inline })

  const two = resolveOptions({ defaults: { tls: { ca: join(dir, 'ca.pem') } }, services: { a: { baseUrl: url }, b: { baseUrl: url } } })
  t.equal(two.services.get('a')?.tls?.ca?.[0], two.services.get('b')?.tls?.ca?.[0], 'a file shared by services is read once')
})

t.test('names the key and the path of a tls file that cannot be read', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'nope.pem')
  const err = catchError(() => one({ tls: { ca: ['-----BEGIN CERTIFICATE-----', file] } }))
  t.equal(err.key, 'services.svc.tls.ca[1]')
  t.match(err.message, `services.svc.tls.ca[1]: cannot read the file "${file}": ENOENT`)
  t.equal(catchError(() => one({ tls: { key: file } })).key, 'services.svc.tls.key')
  t.equal(catchError(() => one({ tls: { ca: file } })).key, 'services.svc.tls.ca')
})

t.test('loads configFile and lets inline options win', async (t) => {
  const dir = t.testdir({
    'services.yaml': [
      'closeTimeout: 1000',
      'defaults:',
      '  connections: ${POOL:-12}',
      '  headers: { x-from: file }',
      'services:',
      '  billing:',
      '    baseUrl: https://billing.internal/api',
      '    retry: { attempts: 1, baseDelay: 50 }',
      '    timeout: { connect: 300 }',
      '  users:',
      '    baseUrl: [http://u1:8080, http://u2:8080]'
    ].join('\n')
  })
  const fallback = (): string => 'inline'
  const resolved = resolveOptions({
    configFile: join(dir, 'services.yaml'),
    closeTimeout: 2000,
    services: {
      billing: { baseUrl: 'https://billing.internal/api', retry: { attempts: 4 }, fallback },
      users: { baseUrl: ['http://u3:8080'] }
    }
  })
  t.equal(resolved.closeTimeout, 2000)
  const billing = resolved.services.get('billing') as ResolvedService
  t.equal(billing.connections, 12)
  t.same(billing.headers, { 'x-from': 'file', 'accept-encoding': 'gzip, deflate, br' })
  t.match(billing.retry, { attempts: 4, baseDelay: 50 })
  t.equal(billing.timeout.connect, 300)
  t.equal(billing.fallback, fallback)
  t.same(resolved.services.get('users')?.origins, ['http://u3:8080'], 'arrays replace')
})

t.test('validates the merge of file and inline options', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ services: { billing: { baseUrl: 'http://b', timout: 1 } } }) })
  const err = catchError(() => resolveOptions({ configFile: join(dir, 'c.json') }))
  t.equal(err.message, 'services.billing.timout: unknown option (did you mean "timeout"?)')
  const bad = catchError(() => resolveOptions({ configFile: 42 as unknown as string }))
  t.equal(bad.message, 'configFile: expected a non-empty string, got 42')
})

t.test('merges options deeply without touching either side', async (t) => {
  const fn = (): number => 1
  const buf = Buffer.from('a')
  const base = { a: { b: 1, c: [1, 2] }, d: fn, e: buf, f: 1 }
  const override = { a: { c: [3], x: { y: 1 } }, d: undefined, e: Buffer.from('b'), f: undefined, g: null }
  const merged = mergeOptions(base, override)
  t.same(merged, { a: { b: 1, c: [3], x: { y: 1 } }, d: fn, e: Buffer.from('b'), f: 1, g: null })
  t.same(base, { a: { b: 1, c: [1, 2] }, d: fn, e: buf, f: 1 })
  t.equal(mergeOptions({ a: 1 }, undefined).a, 1)
  t.equal(mergeOptions(undefined, 5), 5)
})

t.test('re-exports the option module from its index', async (t) => {
  t.equal(config.resolveOptions, resolveOptions)
  t.equal(typeof config.loadConfigFile, 'function')
  t.equal(typeof config.validateOptions, 'function')
  t.equal(config.mergeOptions, mergeOptions)
  t.equal(config.builtInDefaults, builtInDefaults)
})

import { InvalidOptionsError } from '../errors'
import type { HttpServicesOptions } from './types'

/**
 * Checks the value found at a dotted key and throws an `InvalidOptionsError` on the first problem.
 * `expected` says what the checker accepts, in words, so unions can compose their message.
 */
export interface Checker {
  (value: unknown, key: string): void
  readonly expected: string
}

// Keys whose values are secrets, or hold them: never echoed in a message (a trailing newline from a secret file is
// a common way to get a header value refused).
const kSecretKey = /(^|\.)(headers\.[^.]+|passphrase|key|cert|token|password|secret)$/i

/** Throws `InvalidOptionsError` with the message `<key>: expected <what>, got <value>` (secret values shown as `***`). */
export function fail (key: string, expected: string, value: unknown): never {
  if (hasLiteralPrototype(value)) throw invalid(join(key, '__proto__'), forbiddenKey('__proto__'))
  const secret = typeof value === 'string' && value !== '' && kSecretKey.test(key) && !key.endsWith(`.${value}`)
  const shown = secret ? '"***"' : show(value)
  throw invalid(key, `expected ${expected}, got ${shown}`)
}

/** A string as a message may show it: URL credentials and query values redacted. */
function redactText (text: string): string {
  return text.replace(/^([a-z][a-z\d+.-]*:\/\/)[^/?#@]*@/i, '$1***@').replace(/([?&][^=&#]*=)[^&#]*/g, '$1***')
}

/** An `InvalidOptionsError` whose message is `<key>: <problem>` and whose `key` is set. */
export function invalid (key: string, problem: string): InvalidOptionsError {
  const err = new InvalidOptionsError(`${key === '' ? 'options' : key}: ${problem}`)
  err.key = key
  return err
}

/** The value as it reads in a message: JSON for data, a word for what JSON cannot show. */
export function show (value: unknown): string {
  switch (typeof value) {
    case 'string': return truncate(JSON.stringify(redactText(value)))
    case 'number': return String(value)
    case 'undefined': return 'undefined'
    case 'function': return 'a function'
    case 'bigint': return `${value}n`
    case 'symbol': return value.toString()
    case 'boolean': return String(value)
  }
  if (value === null) return 'null'
  if (Buffer.isBuffer(value)) return 'a Buffer'
  if (!Array.isArray(value) && !isPlainObject(value)) {
    const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name
    return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object'
  }
  try {
    return truncate(JSON.stringify(value))
  } catch {
    return Array.isArray(value) ? 'an array' : 'an object'
  }
}

function truncate (text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

/** `true` for `{}` literals, `Object.create(null)` and parsed YAML/JSON objects. */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A checker from a description and a test. */
export function rule (expected: string, test: (value: unknown) => boolean): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!test(value)) fail(key, expected, value)
  }, { expected })
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
const isString = (v: unknown): v is string => typeof v === 'string'
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean'
const isFalse = (v: unknown): v is false => v === false

/** An integer in `[min, max]`. */
export function integer (min: number, max = Infinity): Checker {
  const expected = max === Infinity ? `an integer >= ${min}` : `an integer between ${min} and ${max}`
  return rule(expected, (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max)
}

/** A finite number that passes `test`. */
export function number (expected: string, test: (n: number) => boolean): Checker {
  return rule(expected, (v) => isNumber(v) && test(v))
}

/** The longest wait Node's timers take: a longer `setTimeout` fires after 1 ms instead. */
export const kMaxTimerMs = 2_147_483_647

/** Milliseconds that pass `test`, at most `kMaxTimerMs` (a longer one is refused with its own message). */
function millis (expected: string, test: (n: number) => boolean): Checker {
  const base = number(expected, test)
  return Object.assign((value: unknown, key: string) => {
    base(value, key)
    if ((value as number) > kMaxTimerMs) fail(key, `at most ${kMaxTimerMs} ms (about 24.8 days: Node's timers wait no longer)`, value)
  }, { expected })
}

export const positiveMs = millis('a positive number of milliseconds', (n) => n > 0)
export const ms = millis('a number of milliseconds >= 0', (n) => n >= 0)
/** A span only used in arithmetic (a window, a TTL), never a timer's delay: any length. */
const positiveSpan = number('a positive number of milliseconds', (n) => n > 0)
export const positive = number('a positive number', (n) => n > 0)
export const boolean = rule('a boolean', isBoolean)
export const string = rule('a non-empty string', (v) => isString(v) && v !== '')
export const fn = rule('a function', (v) => typeof v === 'function')

const kToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const kBadHeaderValue = /[\r\n\0]/
export const headerName = rule('a header name (an HTTP token)', (v) => isString(v) && kToken.test(v))
export const headerValue = rule('a string without CR, LF or NUL', (v) => isString(v) && !kBadHeaderValue.test(v))

// Headers that frame one request's body or manage one connection: undici sets them itself (or refuses them) for each
// request, so a value fixed for every call of a service is wrong for all but one.
const kPerRequestHeaders = ['content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect']
// What an inbound request's headers must not pass on: its Host (the client chose it; a downstream or a forward proxy
// routes on it), its framing and its hop-by-hop headers (they describe the inbound connection, not the call).
const kNotForwarded = new Set([...kPerRequestHeaders, 'host', 'connection', 'proxy-connection', 'te', 'trailer'])

/** A header name that is not one of `refused` (lower-case), which `why` explains. */
function headerNameExcept (refused: Set<string>, why: string): Checker {
  return Object.assign((value: unknown, key: string) => {
    headerName(value, key)
    if (refused.has((value as string).toLowerCase())) fail(key, `a header name other than ${why}`, value)
  }, { expected: headerName.expected })
}

const serviceHeaderName = headerNameExcept(new Set(kPerRequestHeaders),
  `${kPerRequestHeaders.join(', ')} (undici frames each request's body and connection itself)`)
const forwardedHeaderName = headerNameExcept(kNotForwarded,
  'host, content-length and the hop-by-hop headers (they describe the inbound request and its connection, not the call)')
export const pem = rule('PEM text, a file path or a Buffer', (v) => (isString(v) && v !== '') || Buffer.isBuffer(v))

/** One of the listed values. */
export function oneOf (...values: unknown[]): Checker {
  return rule(`one of ${values.map(show).join(', ')}`, (v) => values.includes(v))
}

/** An array whose every item passes `item`; `[i]` is appended to the key of an item. */
export function arrayOf (item: Checker, expected: string, minLength = 0): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!Array.isArray(value) || value.length < minLength) fail(key, expected, value)
    value.forEach((v, i) => item(v, `${key}[${i}]`))
  }, { expected })
}

/** A plain object of any keys: `name` checks each key (given the dotted key), `item` each value. */
export function record (name: Checker, item: Checker): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!isPlainObject(value)) fail(key, 'an object', value)
    for (const k of Object.keys(value)) {
      const at = join(key, k)
      if (kForbiddenKeys.has(k)) throw invalid(at, forbiddenKey(k))
      name(k, at)
      item(value[k], at)
    }
  }, { expected: 'an object' })
}

export interface ObjectRules {
  /** Keys that must be present. */
  required?: string[]
  /** Extra words after "unknown option" for keys that are known elsewhere. */
  hints?: Record<string, string>
  /** Checks across keys, run after each key passed. */
  refine?: (value: Record<string, unknown>, key: string) => void
}

/** A plain object with exactly the keys of `spec`; `undefined` values count as absent. */
export function object (spec: Record<string, Checker>, rules: ObjectRules = {}): Checker {
  const known = Object.keys(spec)
  return Object.assign((value: unknown, key: string) => {
    if (!isPlainObject(value)) fail(key, 'an object', value)
    for (const k of Object.keys(value)) {
      const at = join(key, k)
      if (kForbiddenKeys.has(k)) throw invalid(at, forbiddenKey(k))
      if (!Object.hasOwn(spec, k)) throw invalid(at, unknownOption(k, known, rules.hints?.[k]))
      if (value[k] !== undefined) spec[k](value[k], at)
    }
    for (const k of rules.required ?? []) {
      if (value[k] === undefined) spec[k](undefined, join(key, k))
    }
    rules.refine?.(value, key)
  }, { expected: 'an object' })
}

/**
 * A union: the first branch whose `test` matches checks the value (so its message is the precise one);
 * when none matches, the message lists what every branch accepts.
 */
export function variants (...branches: Branch[]): Checker {
  const words = branches.map(([, c]) => c.expected)
  return variantsAs(`${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`, ...branches)
}

type Branch = [test: (v: unknown) => boolean, check: Checker]

/** `variants` with its own wording for the value that matches no branch. */
export function variantsAs (expected: string, ...branches: Branch[]): Checker {
  return Object.assign((value: unknown, key: string) => {
    for (const [test, check] of branches) {
      if (test(value)) return check(value, key)
    }
    fail(key, expected, value)
  }, { expected })
}

const ok = (expected: string): Checker => rule(expected, () => true)
const falseBranch: [typeof isFalse, Checker] = [isFalse, ok('false')]

/** `false` or what `check` accepts (`test` tells which of the two the value is meant to be). */
export function falseOr (check: Checker, test: (v: unknown) => boolean = isPlainObject): Checker {
  return variants(falseBranch, [test, check])
}

/** A boolean (on with defaults / off) or the object `check` accepts. */
export function booleanOr (check: Checker): Checker {
  return variants([isBoolean, boolean], [isPlainObject, check])
}

/**
 * Keys that change or shadow an object's prototype when assigned (`__proto__`) or that every object already answers
 * (`constructor`, `prototype`): no option has them, and a config walked with plain assignment would lose the file
 * that holds them (a `__proto__` key replaces the object's prototype instead of adding an entry).
 */
export const kForbiddenKeys: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

/** The problem of a refused key, after `<dotted key>: `. */
export function forbiddenKey (k: string): string {
  return `the key ${JSON.stringify(k)} is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)`
}

/**
 * `true` for an object whose prototype is a plain object that is not a class's prototype: what an object literal with
 * a `__proto__: {…}` key makes (it sets the prototype instead of adding a key). `fail` names it as the refused key
 * rather than as "an instance of Object".
 */
function hasLiteralPrototype (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto !== Object.prototype && isPlainObject(proto) && !Object.hasOwn(proto, 'constructor')
}

function join (key: string, k: string): string {
  return key === '' ? k : `${key}.${k}`
}

function unknownOption (name: string, known: string[], hint: string | undefined): string {
  if (hint !== undefined) return `unknown option (${hint})`
  const close = suggest(name, known)
  return close === undefined
    ? `unknown option (expected one of: ${known.join(', ')})`
    : `unknown option (did you mean "${close}"?)`
}

/** The known name closest to `name` when it is close enough to be a typo (case-insensitive edit distance). */
export function suggest (name: string, known: string[]): string | undefined {
  const limit = Math.max(1, Math.floor(name.length / 3))
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    // In a name of three letters or fewer a swap changes too much to read as a typo (`dsn` is not `dns`).
    const d = distance(name.toLowerCase(), candidate.toLowerCase(), name.length > 3)
    if (d <= limit && d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** Edit distance; with `swaps`, swapping two neighbours counts as one edit (`qurey` is one edit from `query`). */
function distance (a: string, b: string, swaps: boolean): number {
  let before: number[] = []
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (swaps && i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1)
    }
    before = prev
    prev = row
  }
  return prev[b.length]
}

// ---- URLs -------------------------------------------------------------------------------------

function parseHttpUrl (value: unknown, key: string): URL {
  const expected = 'an http(s) URL'
  if (!isString(value)) fail(key, expected, value)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail(key, expected, value)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(key, expected, value)
  if (url.username !== '' || url.password !== '') {
    if (url.password !== '') url.password = '***'
    fail(key, 'an http(s) URL without credentials (send them with headers or auth)', url.href)
  }
  if (value.includes('?') || value.includes('#')) fail(key, 'an http(s) URL without query or fragment', value)
  return url
}

/** The base path of a parsed `baseUrl`: its pathname without trailing slashes (`''` for `/`). */
export function basePathOf (url: URL): string {
  return url.pathname.replace(/\/+$/, '')
}

const httpUrl = Object.assign((v: unknown, key: string) => { parseHttpUrl(v, key) }, { expected: 'an http(s) URL' })

const httpUrlList = Object.assign((value: unknown, key: string) => {
  if (!Array.isArray(value) || value.length === 0) fail(key, httpUrlList.expected, value)
  const first = basePathOf(parseHttpUrl(value[0], `${key}[0]`))
  for (let i = 1; i < value.length; i++) {
    const path = basePathOf(parseHttpUrl(value[i], `${key}[${i}]`))
    if (path !== first) fail(`${key}[${i}]`, `the same base path as ${key}[0] (${show(first)})`, value[i])
  }
}, { expected: 'a non-empty list of http(s) URLs' })

// ---- The option table -------------------------------------------------------------------------

const fraction = number('a number > 0 and <= 1', (n) => n > 0 && n <= 1)

const timeout = object({ connect: positiveMs, headers: positiveMs, body: positiveMs, total: ms, attempt: ms })

/**
 * A call's own `timeout` (a number is `total`). `connect` is the pool's, shared by every call of the service, so a
 * call cannot set it.
 */
const callTimeout = variants([(v) => typeof v === 'number', ms], [isPlainObject, object(
  { headers: positiveMs, body: positiveMs, total: ms, attempt: ms },
  { hints: { connect: 'the connect timeout belongs to the service\'s pool: set it in the service options (timeout.connect)' } })])

/** Checks a call's `timeout` option; throws `InvalidOptionsError` naming the key. */
export function checkCallTimeout (value: unknown): void {
  callTimeout(value, 'timeout')
}

const tls = object({
  rejectUnauthorized: boolean,
  ca: variantsAs('PEM text, a file path, a Buffer or a non-empty list of them',
    [(v) => isString(v) || Buffer.isBuffer(v), pem],
    [Array.isArray, arrayOf(pem, 'a non-empty list of PEM texts, file paths or Buffers', 1)]),
  cert: pem,
  key: pem,
  passphrase: rule('a string', isString),
  servername: string
})

// Proxy URLs, tokens and headers carry credentials: a message about them never shows them.
const redactUserinfo = (v: string): string => v.replace(/\/\/[^/?#]*@/, '//***@')

const proxyUri = Object.assign((value: unknown, key: string) => {
  if (value === 'env') return
  if (!isString(value)) fail(key, proxyUri.expected, value)
  let url: URL | undefined
  try { url = new URL(value) } catch {}
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail(key, proxyUri.expected, redactUserinfo(value))
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') fail(key, 'a proxy URL without path, query or fragment', redactUserinfo(value))
}, { expected: '"env" or an http(s) proxy URL' })

const secretValue = Object.assign((value: unknown, key: string) => {
  if (!isString(value) || value === '' || kBadHeaderValue.test(value)) fail(key, secretValue.expected, isString(value) ? '***' : value)
}, { expected: 'a non-empty string without CR, LF or NUL' })

const proxy = variants(falseBranch, [isString, proxyUri], [isPlainObject, object({
  uri: proxyUri,
  token: secretValue,
  headers: record(headerName, secretValue),
  tls
}, {
  required: ['uri'],
  refine (value, key) {
    const url = value.uri === 'env' ? undefined : new URL(value.uri as string)
    if (value.token !== undefined && url !== undefined && (url.username !== '' || url.password !== '')) {
      throw invalid(`${key}.token`, 'give the proxy credentials either in uri or as token, not both')
    }
    if (value.tls !== undefined && url?.protocol === 'http:') throw invalid(`${key}.tls`, 'applies to an https proxy only')
  }
})])

const dns = object({ ttl: positiveSpan, maxItems: integer(1), dualStack: boolean })

const retryBudget = object({ ratio: number('a number >= 0', (n) => n >= 0), minPerSecond: number('a number >= 0', (n) => n >= 0), window: positiveSpan })

const retry = object({
  attempts: integer(0),
  baseDelay: ms,
  maxDelay: ms,
  factor: number('a number >= 1', (n) => n >= 1),
  jitter: oneOf('full', 'equal', 'none'),
  delay: fn,
  statusCodes: arrayOf(integer(100, 599), 'an array of status codes (integers between 100 and 599)'),
  methods: arrayOf(headerName, 'an array of HTTP methods'),
  maxRetryAfter: ms,
  idempotencyKey: boolean,
  budget: falseOr(retryBudget)
})

const breaker = object({
  errorPercentage: number('a number between 1 and 100', (n) => n >= 1 && n <= 100),
  minimumRequests: integer(1),
  window: positiveMs,
  windowBuckets: integer(1),
  resetAfter: positiveMs
})

const bulkhead = object({ maxConcurrent: integer(1), maxQueue: integer(0), queueTimeout: positiveMs }, { required: ['maxConcurrent'] })

const kTokenBucketKeys = ['rate', 'interval', 'burst']
const kSlidingWindowKeys = ['limit', 'window']

const rateLimit = object({
  rate: positive,
  interval: positiveSpan,
  burst: number('a number >= 1', (n) => n >= 1),
  limit: integer(1),
  window: positiveSpan,
  maxWait: ms,
  adaptive: booleanOr(object({ floor: fraction, ceiling: positive, increase: fraction }))
}, {
  refine (value, key) {
    const bucket = kTokenBucketKeys.some((k) => value[k] !== undefined)
    const sliding = kSlidingWindowKeys.some((k) => value[k] !== undefined)
    if (bucket && sliding) fail(key, 'either rate (token bucket) or limit and window (sliding window), not both', value)
    if (!bucket && !sliding) fail(key, 'rate (token bucket) or limit and window (sliding window)', value)
    if (bucket && value.rate === undefined) fail(`${key}.rate`, 'a positive number (interval and burst need it)', undefined)
    if (sliding && value.limit === undefined) fail(`${key}.limit`, 'an integer >= 1 (window needs it)', undefined)
    if (sliding && value.window === undefined) fail(`${key}.window`, 'a positive number of milliseconds (limit needs it)', undefined)
  }
})

const hedge = object({ delay: ms, maxHedges: integer(1) }, { required: ['delay'] })

const deadlineHeaders = object({ remaining: falseOr(headerName, isString), attempt: falseOr(headerName, isString) })

const dispatcher = rule('an undici Dispatcher (an object with a dispatch function)',
  (v) => typeof v === 'object' && v !== null && typeof (v as { dispatch?: unknown }).dispatch === 'function')

/** Checkers of `CommonServiceOptions`, the keys allowed both in `defaults` and per service. */
export const commonServiceSpec: Record<string, Checker> = {
  connections: integer(1),
  pipelining: integer(1),
  keepAliveTimeout: positiveMs,
  keepAliveMaxTimeout: positiveMs,
  allowH2: boolean,
  headers: record(serviceHeaderName, headerValue),
  timeout: variants([(v) => typeof v === 'number', ms], [isPlainObject, timeout]),
  tls,
  dns: booleanOr(dns),
  proxy,
  maxResponseSize: integer(1),
  decompress: boolean,
  followRedirects: integer(0),
  forwardHeaders: arrayOf(forwardedHeaderName, 'an array of header names'),
  throwHttpErrors: boolean,
  passthroughStatus: boolean,
  retry: variants([(v) => typeof v === 'number', integer(0)], falseBranch, [isPlainObject, retry]),
  breaker: booleanOr(breaker),
  bulkhead: falseOr(bulkhead),
  rateLimit: falseOr(rateLimit),
  hedge: falseOr(hedge),
  fallback: fn,
  deadlineHeaders: booleanOr(deadlineHeaders)
}

/** Checkers of `ServiceOptions`. */
export const serviceSpec: Record<string, Checker> = {
  baseUrl: variants([isString, httpUrl], [Array.isArray, httpUrlList]),
  socketPath: string,
  ...commonServiceSpec,
  critical: boolean
}

const perServiceOnly = 'only a service may set it, under services.<name>'

const serviceName = rule('a service name (a letter, then letters, digits, "_", "." or "-")',
  (v) => isString(v) && /^[A-Za-z][\w.-]*$/.test(v))

const options = object({
  services: record(serviceName, object(serviceSpec, { required: ['baseUrl'] })),
  defaults: object(commonServiceSpec, { hints: { baseUrl: perServiceOnly, critical: perServiceOnly, socketPath: perServiceOnly } }),
  configFile: string,
  closeTimeout: ms,
  requestIdHeader: falseOr(headerName, isString),
  requestDeadline: ms,
  deadlineHeader: falseOr(headerName, isString),
  dispatcher,
  underPressure: booleanOr(rule('an object of @fastify/under-pressure options', isPlainObject)),
  // Fastify's own register options reach the plugin in the same object; they are Fastify's business, not ours.
  prefix: ok('anything'),
  logLevel: ok('anything'),
  logSerializers: ok('anything')
})

/**
 * Validates plugin options (already merged with the config file). Every key is checked and unknown keys are
 * refused; the first problem throws one `InvalidOptionsError` whose `key` is the dotted path of the option and
 * whose message reads `<key>: expected <what>, got <value>`.
 */
export function validateOptions (value: unknown): asserts value is HttpServicesOptions {
  options(value, '')
}

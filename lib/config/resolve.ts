import { readFileSync } from 'node:fs'
import type { ResolvedOptions, ResolvedProxy, ResolvedRateLimit, ResolvedRetry, ResolvedService, ResolvedTls } from './resolved'
import type { CommonServiceOptions, HttpServicesOptions, RetryOptions, ServiceOptions } from './types'
import { loadConfigFile } from './load-file'
import { basePathOf, invalid, isPlainObject, validateOptions } from './validate'

/** The built-in defaults, as documented by the `@default` tags of `types.ts`. */
export const builtInDefaults = Object.freeze({
  connections: 64,
  pipelining: 1,
  keepAliveTimeout: 4000,
  keepAliveMaxTimeout: 60000,
  allowH2: false,
  timeout: { connect: 5000, headers: 30000, body: 30000, total: 0 },
  tls: { rejectUnauthorized: true },
  dns: { ttl: 10000, maxItems: 100, dualStack: true },
  maxResponseSize: 10 * 1024 * 1024,
  decompress: true,
  acceptEncoding: 'gzip, deflate, br',
  followRedirects: 0,
  throwHttpErrors: true,
  passthroughStatus: false,
  retry: {
    attempts: 3,
    baseDelay: 500,
    maxDelay: 30000,
    factor: 2,
    jitter: 'full' as const,
    statusCodes: [408, 429, 500, 502, 503, 504],
    methods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'],
    maxRetryAfter: 60000,
    idempotencyKey: false
  },
  retryBudget: { ratio: 0.2, minPerSecond: 3, window: 10000 },
  breaker: { errorPercentage: 50, minimumRequests: 20, window: 10000, windowBuckets: 10, resetAfter: 30000 },
  bulkhead: { maxQueue: 0, queueTimeout: 10000 },
  rateLimit: { interval: 1000, maxWait: 0 },
  adaptive: { floor: 0.1, ceiling: 1, increase: 0.05 },
  hedge: { maxHedges: 1 },
  deadlineHeaders: { remaining: 'x-request-timeout-ms', attempt: 'x-attempt' },
  critical: false,
  closeTimeout: 10000,
  requestIdHeader: 'x-request-id',
  requestDeadline: 0,
  deadlineHeader: false as const
})

/**
 * Deep-merges `override` onto `base` without touching either: plain objects merge key by key, everything else
 * (arrays, functions, Buffers, class instances such as a dispatcher) replaces; `undefined` in `override` keeps
 * the base value.
 */
export function mergeOptions<T> (base: T, override: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(override)) return (override === undefined ? base : override) as T
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(override)) {
    // An own `__proto__` key (from JSON.parse) is kept as a key, so validation names it instead of it replacing
    // `out`'s prototype.
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    else out[k] = mergeOptions(out[k], v)
  }
  return out as T
}

/**
 * Turns plugin options into the resolved option set: loads `configFile` (inline options win over it),
 * validates, merges `defaults` under every service and fills the built-in defaults.
 *
 * @throws InvalidOptionsError naming the dotted key of the first bad option.
 */
export function resolveOptions (options: HttpServicesOptions = {}): ResolvedOptions {
  let merged: unknown = options
  const configFile: unknown = isPlainObject(options) ? options.configFile : undefined
  if (configFile !== undefined) {
    validateOptions({ configFile })
    merged = mergeOptions(loadConfigFile(configFile as string), options)
  }
  validateOptions(merged)
  const files = new Map<string, Buffer>()
  const services = new Map<string, ResolvedService>()
  for (const [name, service] of Object.entries(merged.services ?? {})) {
    services.set(name, resolveService(name, merged.defaults ?? {}, service, files))
  }
  const d = builtInDefaults
  return {
    services,
    closeTimeout: merged.closeTimeout ?? d.closeTimeout,
    requestIdHeader: lowerOrFalse(merged.requestIdHeader ?? d.requestIdHeader),
    requestDeadline: merged.requestDeadline ?? d.requestDeadline,
    deadlineHeader: lowerOrFalse(merged.deadlineHeader ?? d.deadlineHeader),
    dispatcher: merged.dispatcher,
    underPressure: merged.underPressure === true ? {} : merged.underPressure === false ? undefined : merged.underPressure
  }
}

function resolveService (name: string, defaults: CommonServiceOptions, service: ServiceOptions, files: Map<string, Buffer>): ResolvedService {
  const o = mergeService(defaults, service)
  const d = builtInDefaults
  const key = `services.${name}`
  const urls = (Array.isArray(o.baseUrl) ? o.baseUrl : [o.baseUrl]).map((u) => new URL(u))
  const decompress = o.decompress ?? d.decompress
  return {
    name,
    origins: urls.map((u) => u.origin),
    basePath: basePathOf(urls[0]),
    connections: o.connections ?? d.connections,
    pipelining: o.pipelining ?? d.pipelining,
    keepAliveTimeout: o.keepAliveTimeout ?? d.keepAliveTimeout,
    keepAliveMaxTimeout: o.keepAliveMaxTimeout ?? d.keepAliveMaxTimeout,
    allowH2: o.allowH2 ?? d.allowH2,
    headers: withAcceptEncoding(lowerKeys(o.headers), decompress),
    timeout: { ...d.timeout, ...(o.timeout as object) },
    tls: o.tls === undefined ? undefined : resolveTls(o.tls, `${key}.tls`, files),
    dns: enabled(o.dns, d.dns),
    maxResponseSize: o.maxResponseSize ?? d.maxResponseSize,
    decompress,
    followRedirects: o.followRedirects ?? d.followRedirects,
    forwardHeaders: [...new Set((o.forwardHeaders ?? []).map((h) => h.toLowerCase()))],
    throwHttpErrors: o.throwHttpErrors ?? d.throwHttpErrors,
    passthroughStatus: o.passthroughStatus ?? d.passthroughStatus,
    retry: resolveRetry(o.retry),
    breaker: enabled(o.breaker, d.breaker),
    bulkhead: enabled(o.bulkhead, d.bulkhead as typeof d.bulkhead & { maxConcurrent: number }),
    rateLimit: resolveRateLimit(o.rateLimit),
    hedge: enabled(o.hedge, d.hedge as typeof d.hedge & { delay: number }),
    fallback: o.fallback,
    deadlineHeaders: resolveDeadlineHeaders(o.deadlineHeaders),
    critical: o.critical ?? d.critical,
    ...resolveRoute(o, key, files)
  }
}

/** Object options whose keys merge one level deep between `defaults` and a service (the service's win). */
const kMergedOneLevel = ['timeout', 'tls', 'retry', 'breaker', 'dns', 'bulkhead', 'rateLimit', 'hedge', 'deadlineHeaders'] as const

/**
 * `defaults` under a service. Shorthands are expanded first (`timeout: n` is `{ total: n }`, `retry: n` is
 * `{ attempts: n }`, `true` is `{}`) so `defaults.timeout.connect` survives a service's `timeout: 2000`;
 * `false` on either side replaces.
 */
function mergeService (defaults: CommonServiceOptions, service: ServiceOptions): ServiceOptions {
  const out: Record<string, unknown> = { ...defaults, ...definedOnly(service) }
  for (const k of kMergedOneLevel) {
    const base = expand(k, defaults[k])
    const own = expand(k, service[k])
    if (isPlainObject(base) && isPlainObject(own)) out[k] = { ...base, ...own }
    else out[k] = own ?? base
  }
  if (isPlainObject(out.rateLimit) && isPlainObject(service.rateLimit)) {
    // The service's own rate limit names its algorithm (validation made sure), so the other algorithm's keys
    // inherited from defaults are dropped rather than mixed in.
    const own = service.rateLimit
    const drop = own.rate !== undefined ? ['limit', 'window'] : ['rate', 'interval', 'burst']
    const merged = out.rateLimit as Record<string, unknown>
    for (const k of drop) if (own[k as keyof typeof own] === undefined) delete merged[k]
  }
  out.headers = { ...lowerKeys(defaults.headers), ...lowerKeys(service.headers) }
  return out as unknown as ServiceOptions
}

/** `undefined` when off; otherwise the (already expanded) option over its built-in defaults. */
function enabled<T extends object> (value: unknown, defaults: T): T | undefined {
  return value === undefined || value === false ? undefined : { ...defaults, ...(value as Partial<T>) }
}

function expand (key: string, value: unknown): unknown {
  if (value === true) return {}
  if (isPlainObject(value)) return definedOnly(value)
  if (typeof value === 'number') return key === 'timeout' ? { total: value } : { attempts: value }
  return value
}

function definedOnly<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The built-in retry options, resolved: what a service without its own `retry` gives a call that asks for retries. */
const kDefaultRetry: ResolvedRetry = Object.freeze({
  ...builtInDefaults.retry,
  delay: undefined,
  budget: Object.freeze({ ...builtInDefaults.retryBudget })
})

/**
 * `retry` options over `base`: the built-in defaults for a service, the service's resolved options for a call's own
 * `retry`. A number is `attempts`; `false` and 0 attempts turn retries off (`undefined`). `budget` merges over the
 * base's (`false` turns it off). The one place retry options are merged and their defaults applied.
 */
export function resolveRetry (retry: number | false | RetryOptions | undefined, base: ResolvedRetry = kDefaultRetry): ResolvedRetry | undefined {
  if (retry === false) return undefined
  const { budget, ...own } = typeof retry === 'number' ? { attempts: retry } : definedOnly<RetryOptions>(retry ?? {})
  const r = { ...base, ...own }
  if (r.attempts === 0) return undefined
  return {
    attempts: r.attempts,
    baseDelay: r.baseDelay,
    maxDelay: r.maxDelay,
    factor: r.factor,
    jitter: r.jitter,
    delay: r.delay,
    statusCodes: [...r.statusCodes],
    methods: [...new Set(r.methods.map((m) => m.toUpperCase()))],
    maxRetryAfter: r.maxRetryAfter,
    idempotencyKey: r.idempotencyKey,
    budget: budget === false
      ? undefined
      : budget === undefined
        ? (base.budget === undefined ? undefined : { ...base.budget })
        : { ...(base.budget ?? builtInDefaults.retryBudget), ...definedOnly(budget) }
  }
}

function resolveRateLimit (rateLimit: ServiceOptions['rateLimit']): ResolvedRateLimit | undefined {
  if (rateLimit === undefined || rateLimit === false) return undefined
  const d = builtInDefaults
  const adaptive = rateLimit.adaptive === undefined || rateLimit.adaptive === false
    ? undefined
    : { ...d.adaptive, ...(rateLimit.adaptive === true ? {} : rateLimit.adaptive) }
  const maxWait = rateLimit.maxWait ?? d.rateLimit.maxWait
  if (rateLimit.rate !== undefined) {
    return {
      kind: 'token-bucket',
      rate: rateLimit.rate,
      interval: rateLimit.interval ?? d.rateLimit.interval,
      burst: rateLimit.burst ?? rateLimit.rate,
      maxWait,
      adaptive
    }
  }
  // Validation guarantees a sliding window has both `limit` and `window`.
  const limit = rateLimit.limit as number
  return { kind: 'sliding-window', rate: limit, interval: rateLimit.window as number, burst: limit, maxWait, adaptive }
}

function resolveDeadlineHeaders (value: ServiceOptions['deadlineHeaders']): ResolvedService['deadlineHeaders'] {
  if (value === undefined || value === false) return undefined
  const h = { ...builtInDefaults.deadlineHeaders, ...definedOnly(value as object) } as { remaining: string | false, attempt: string | false }
  const remaining = lowerOrFalse(h.remaining)
  const attempt = lowerOrFalse(h.attempt)
  // Both headers off is no policy at all, and a policy that is off is not in the chain.
  return remaining === false && attempt === false ? undefined : { remaining, attempt }
}

/**
 * `proxy` and `socketPath`, present only when set. Both decide where connections go, so neither combines with the
 * other, with a list of `baseUrl` or with `dns` (which would resolve the host here rather than at the proxy, or resolve
 * a host that a socket path makes irrelevant).
 */
function resolveRoute (o: ServiceOptions, key: string, files: Map<string, Buffer>): Pick<ResolvedService, 'proxy' | 'socketPath'> {
  if (Array.isArray(o.baseUrl) && o.baseUrl.length > 1 && o.dns !== undefined && o.dns !== false) {
    // undici's dns interceptor rewrites the origin, so every call would go to the first upstream.
    throw invalid(`${key}.dns`, 'cannot be combined with a list of baseUrl (set dns: false on this service)')
  }
  const proxy = o.proxy === false ? undefined : o.proxy
  if (proxy === undefined && o.socketPath === undefined) return {}
  if (proxy !== undefined && o.socketPath !== undefined) throw invalid(`${key}.socketPath`, 'cannot be combined with proxy')
  const at = `${key}.${proxy !== undefined ? 'proxy' : 'socketPath'}`
  if (Array.isArray(o.baseUrl) && o.baseUrl.length > 1) throw invalid(at, 'cannot be combined with a list of baseUrl')
  if (o.dns !== undefined && o.dns !== false) throw invalid(at, 'cannot be combined with dns (set dns: false on this service)')
  if (proxy === undefined) return { socketPath: o.socketPath }
  const p = typeof proxy === 'string' ? { uri: proxy } : proxy
  const url = p.uri === 'env' ? undefined : new URL(p.uri)
  const resolved = {
    tls: p.tls === undefined ? undefined : resolveTls(p.tls, `${at}.tls`, files),
    display: url === undefined ? 'env' : `${url.protocol}//${url.host}`
  }
  // Secrets are not enumerable: a logged or snapshotted option set never shows them.
  Object.defineProperties(resolved, { uri: { value: p.uri }, token: { value: p.token }, headers: { value: lowerKeys(p.headers) } })
  return { proxy: resolved as ResolvedProxy }
}

function resolveTls (tls: NonNullable<ServiceOptions['tls']>, key: string, files: Map<string, Buffer>): ResolvedTls {
  const out: ResolvedTls = { rejectUnauthorized: tls.rejectUnauthorized ?? builtInDefaults.tls.rejectUnauthorized }
  if (tls.ca !== undefined) {
    out.ca = Array.isArray(tls.ca)
      ? tls.ca.map((ca, i) => readPem(ca, `${key}.ca[${i}]`, files))
      : [readPem(tls.ca, `${key}.ca`, files)]
  }
  if (tls.cert !== undefined) out.cert = readPem(tls.cert, `${key}.cert`, files)
  if (tls.key !== undefined) out.key = readPem(tls.key, `${key}.key`, files)
  if (tls.passphrase !== undefined) out.passphrase = tls.passphrase
  if (tls.servername !== undefined) out.servername = tls.servername
  return out
}

/** PEM text and Buffers pass through; any other string is a file path, read once per resolution. */
function readPem (value: string | Buffer, key: string, files: Map<string, Buffer>): string | Buffer {
  if (typeof value !== 'string' || value.includes('-----BEGIN')) return value
  let content = files.get(value)
  if (content === undefined) {
    try {
      content = readFileSync(value)
    } catch (err) {
      throw invalid(key, `cannot read the file ${JSON.stringify(value)}: ${(err as Error).message}`)
    }
    files.set(value, content)
  }
  return content
}

function lowerKeys (headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v
  return out
}

/** Decoding services ask for compressed bodies, once at start-up, unless their headers already say what they accept. */
function withAcceptEncoding (headers: Record<string, string>, decompress: boolean): Record<string, string> {
  if (decompress && headers['accept-encoding'] === undefined) headers['accept-encoding'] = builtInDefaults.acceptEncoding
  return headers
}

function lowerOrFalse (value: string | false): string | false {
  return value === false ? false : value.toLowerCase()
}

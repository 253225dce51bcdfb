/**
 * One service: the options only a service sets (`baseUrl`, `socketPath`, `critical`), its resolved form, and how
 * `defaults` and the service's own options become it. Each group resolves itself; this file calls each once.
 */
import { boolean, fail, invalid, isPlainObject, isString, rule, show, variants } from '../checkers'
import { lowerKeys, string } from '../values'
import { resolveAuth, type ResolvedAuth } from './auth'
import { resolveBreaker, type ResolvedBreaker } from './breaker'
import { bulkheadOptions, type ResolvedBulkhead } from './bulkhead'
import { cacheOptions, type ResolvedCache } from './cache'
import { commonServiceRows, kAcceptEncoding, type CommonServiceOptions, type Fallback } from './common'
import { resolveDeadlineHeaders, type ResolvedDeadlineHeaders } from './deadline-headers'
import { dnsOptions, type ResolvedDns } from './dns'
import { defineGroup, definedOnly, enabled, type Spec } from './group'
import { hedgeOptions, type ResolvedHedge } from './hedge'
import { resolveCoalesce, type ResolvedCoalesce } from './coalesce'
import { resolveProxy, type ResolvedProxy } from './proxy'
import { resolveRateLimit, type ResolvedRateLimit } from './rate-limit'
import { resolveRetry, type ResolvedRetry } from './retry'
import { resolveTimeout, type ResolvedTimeout, type TimeoutOptions } from './timeout'
import { resolveTls, type ResolvedTls } from './tls'
import { resolveWebhook, webhookOptions, type ResolvedWebhook, type WebhookOptions } from './webhook'

/** One downstream service. */
export interface ServiceOptions extends CommonServiceOptions {
  /**
   * Base URL (http or https), with an optional base path. A list spreads calls over several upstreams: round robin
   * over those whose breaker lets calls through (one breaker per upstream), or undici's BalancedPool with
   * `breaker: false`.
   */
  baseUrl: string | string[]
  /**
   * Connect to this Unix domain socket (or Windows named pipe) instead of TCP; `baseUrl` still gives the scheme and
   * the Host header. Cannot be combined with `proxy`, `dns` or a list of `baseUrl`.
   */
  socketPath?: string
  /**
   * Marks the service as critical for the health check: an open breaker makes the app report unhealthy.
   * @default false
   */
  critical?: boolean
  /**
   * The service is a webhook endpoint: how `httpServices.webhooks.send(name, event)` signs events and when it
   * retries them (see the README "Webhooks").
   */
  webhook?: WebhookOptions
  /**
   * A path on the service (starting with `/`, under its base path, without query or fragment) that answers a GET
   * below 500 when it is healthy. Only the `check` command (README "Checking a config before deploy") calls it;
   * calls made by the app never do.
   */
  healthPath?: string
}

/** A `baseUrl`: http(s), without credentials (logs would show them: send them with headers or auth), query or fragment. */
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

/** `healthPath`: a path the check command GETs; a query could carry a secret into its output, so none is taken. */
const healthPath = rule('a path starting with "/" (not "//"), without query or fragment',
  (v) => isString(v) && v.startsWith('/') && !v.startsWith('//') && !/[?#\s]/.test(v))

export const serviceOptions = defineGroup({
  baseUrl: { check: variants([isString, httpUrl], [Array.isArray, httpUrlList]), default: undefined },
  socketPath: { check: string, default: undefined },
  ...commonServiceRows,
  critical: { check: boolean, default: false },
  webhook: { check: webhookOptions.check, default: undefined },
  healthPath: { check: healthPath, default: undefined }
} satisfies Spec<ServiceOptions>, { required: ['baseUrl'] })

/** Options of one service after validation, merging with `defaults` and filling built-in defaults. */
export interface ResolvedService {
  name: string
  /** Origins (`scheme://host:port`) of the upstreams; more than one means one pool each (with a breaker) or a BalancedPool. */
  origins: string[]
  /** Base path without a trailing slash (`''` when none), prefixed to every call path. */
  basePath: string
  connections: number
  pipelining: number
  keepAliveTimeout: number
  keepAliveMaxTimeout: number
  allowH2: boolean
  /** Default headers, lower-case names. */
  headers: Record<string, string>
  timeout: ResolvedTimeout
  tls: ResolvedTls | undefined
  dns: ResolvedDns | undefined
  maxResponseSize: number
  /** Decode compressed bodies; when on, `headers` carries an `accept-encoding` unless the user set one. */
  decompress: boolean
  followRedirects: number
  /** Lower-case header names. */
  forwardHeaders: string[]
  throwHttpErrors: boolean
  passthroughStatus: boolean
  /** Undefined when retries are off. */
  retry: ResolvedRetry | undefined
  breaker: ResolvedBreaker | undefined
  bulkhead: ResolvedBulkhead | undefined
  rateLimit: ResolvedRateLimit | undefined
  hedge: ResolvedHedge | undefined
  /** Undefined when off. */
  coalesce: ResolvedCoalesce | undefined
  cache: ResolvedCache | undefined
  fallback: Fallback | undefined
  deadlineHeaders: ResolvedDeadlineHeaders | undefined
  /** The credentials calls carry; `undefined` when none. With `forward`, its header is among `forwardHeaders`. */
  auth: ResolvedAuth | undefined
  critical: boolean
  /** Present when the service is a webhook endpoint. */
  webhook?: ResolvedWebhook
  /** Present when calls go through a proxy. */
  proxy?: ResolvedProxy
  /** Present when the service is reached over a Unix domain socket (or named pipe). */
  socketPath?: string
  /** The path the `check` command GETs, when set. */
  healthPath?: string
}

// Every service option is resolved: a key of ServiceOptions that ResolvedService lacks fails to compile here, named
// in the error (`baseUrl` becomes `origins` and `basePath`).
type NoneLeft<K extends never> = K
export type EveryServiceOptionResolved = NoneLeft<Exclude<keyof ServiceOptions, keyof ResolvedService | 'baseUrl'>>

/**
 * One service's options over `defaults`, with every built-in default filled in. `requestIdHeader` is the registry's
 * (lower-case): coalescing leaves it out of a call's identity.
 */
export function resolveService (
  name: string, defaults: CommonServiceOptions, service: ServiceOptions, files: Map<string, Buffer>, requestIdHeader: string | false
): ResolvedService {
  const o = mergeService(defaults, service)
  const d = serviceOptions.defaults
  const key = `services.${name}`
  const urls = (Array.isArray(o.baseUrl) ? o.baseUrl : [o.baseUrl]).map((u) => new URL(u))
  const decompress = o.decompress ?? d.decompress
  const auth = resolveAuth(o.auth ?? d.auth, `${key}.auth`)
  if (auth?.oauth2?.tokenService === name) {
    // Its token request would need a token of its own: the call would wait for itself.
    throw invalid(`${key}.auth.oauth2.tokenService`, `names this service itself (give ${key} an auth of its own, or auth: false, when oauth2 comes from defaults)`)
  }
  const forwardHeaders = (o.forwardHeaders ?? d.forwardHeaders).map((h) => h.toLowerCase())
  // The forwarded credential travels like any forwarded header: copied once per inbound request and service.
  if (auth?.scheme === 'forward') forwardHeaders.push(auth.header as string)
  return {
    name,
    origins: urls.map((u) => u.origin),
    basePath: basePathOf(urls[0]),
    connections: o.connections ?? d.connections,
    pipelining: o.pipelining ?? d.pipelining,
    keepAliveTimeout: o.keepAliveTimeout ?? d.keepAliveTimeout,
    keepAliveMaxTimeout: o.keepAliveMaxTimeout ?? d.keepAliveMaxTimeout,
    allowH2: o.allowH2 ?? d.allowH2,
    headers: withAcceptEncoding(lowerKeys(o.headers ?? d.headers), decompress),
    // mergeService expanded a number to `{ total }`.
    timeout: resolveTimeout(o.timeout as TimeoutOptions | undefined),
    tls: o.tls === undefined ? undefined : resolveTls(o.tls, `${key}.tls`, files),
    dns: enabled(o.dns ?? d.dns, dnsOptions.defaults),
    maxResponseSize: o.maxResponseSize ?? d.maxResponseSize,
    decompress,
    followRedirects: o.followRedirects ?? d.followRedirects,
    forwardHeaders: [...new Set(forwardHeaders)],
    throwHttpErrors: o.throwHttpErrors ?? d.throwHttpErrors,
    passthroughStatus: o.passthroughStatus ?? d.passthroughStatus,
    retry: resolveRetry(o.retry ?? d.retry),
    breaker: resolveBreaker(o.breaker ?? d.breaker),
    bulkhead: enabled(o.bulkhead ?? d.bulkhead, bulkheadOptions.defaults),
    rateLimit: resolveRateLimit(o.rateLimit ?? d.rateLimit),
    hedge: enabled(o.hedge ?? d.hedge, hedgeOptions.defaults),
    coalesce: resolveCoalesce(o.coalesce ?? d.coalesce, requestIdHeader, auth, `${key}.coalesce`),
    cache: enabled(o.cache ?? d.cache, cacheOptions.defaults),
    fallback: o.fallback,
    deadlineHeaders: resolveDeadlineHeaders(o.deadlineHeaders ?? d.deadlineHeaders),
    auth,
    critical: o.critical ?? d.critical,
    ...(service.webhook === undefined ? {} : { webhook: resolveWebhook(service.webhook, key, o.fallback !== undefined) }),
    ...(service.healthPath === undefined ? {} : { healthPath: service.healthPath }),
    ...resolveRoute(o, key, files)
  }
}

/** Object options whose keys merge one level deep between `defaults` and a service (the service's win). */
const kMergedOneLevel = ['timeout', 'tls', 'retry', 'breaker', 'dns', 'bulkhead', 'rateLimit', 'hedge', 'coalesce', 'cache', 'deadlineHeaders'] as const satisfies ReadonlyArray<keyof CommonServiceOptions>

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

function expand (key: string, value: unknown): unknown {
  if (value === true) return {}
  if (isPlainObject(value)) return definedOnly(value)
  if (typeof value === 'number') return key === 'timeout' ? { total: value } : { attempts: value }
  return value
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
  const route = o.proxy ?? serviceOptions.defaults.proxy
  const proxy = route === false ? undefined : route
  if (proxy === undefined && o.socketPath === undefined) return {}
  if (proxy !== undefined && o.socketPath !== undefined) throw invalid(`${key}.socketPath`, 'cannot be combined with proxy')
  const at = `${key}.${proxy !== undefined ? 'proxy' : 'socketPath'}`
  if (Array.isArray(o.baseUrl) && o.baseUrl.length > 1) throw invalid(at, 'cannot be combined with a list of baseUrl')
  if (o.dns !== undefined && o.dns !== false) throw invalid(at, 'cannot be combined with dns (set dns: false on this service)')
  if (proxy === undefined) return { socketPath: o.socketPath }
  return { proxy: resolveProxy(proxy, at, files) }
}

/** Decoding services ask for compressed bodies, once at start-up, unless their headers already say what they accept. */
function withAcceptEncoding (headers: Record<string, string>, decompress: boolean): Record<string, string> {
  if (decompress && headers['accept-encoding'] === undefined) headers['accept-encoding'] = kAcceptEncoding
  return headers
}

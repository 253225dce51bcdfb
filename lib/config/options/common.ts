/**
 * The options every service takes, in `defaults` or in its own entry: the leaf options and one row per group (whose
 * own file holds its keys). A module that adds a service option adds its key and its row here (see group.ts).
 */
import type { HttpServicesError } from '../../errors'
import { arrayOf, boolean, booleanOr, fail, falseBranch, falseOr, integer, isPlainObject, record, variants, type Checker } from '../checkers'
import { fn, headerName, headerValue, positiveMs } from '../values'
import { authOption, type AuthOptions } from './auth'
import { breakerOptions, type BreakerOptions } from './breaker'
import { bulkheadOptions, type BulkheadOptions } from './bulkhead'
import { cacheOptions, type CacheOptions } from './cache'
import { deadlineHeadersOptions, type DeadlineHeadersOptions } from './deadline-headers'
import { dnsOptions, type DnsOptions } from './dns'
import { defineGroup, type Spec } from './group'
import { hedgeOptions, type HedgeOptions } from './hedge'
import { coalesceOptions, type CoalesceOptions } from './coalesce'
import { proxyOption, type ProxyOptions } from './proxy'
import { rateLimitOptions, type RateLimitOptions } from './rate-limit'
import { retryOptions, type RetryOptions } from './retry'
import { timeoutOption, type TimeoutOptions } from './timeout'
import { tlsOptions, type TlsOptions } from './tls'

/** What a fallback returns instead of a failure: a value, or a response built with `mockResponse`. */
export type Fallback = (error: HttpServicesError, context: { service: string, method: string, path: string }) => unknown

/** Options shared by every service (the `defaults` key) and per service. */
export interface CommonServiceOptions {
  /**
   * Most connections to the origin (per upstream when `baseUrl` is a list).
   * @default 64
   */
  connections?: number
  /**
   * Requests pipelined on one connection (1 = none). Above 1, an unsolicited extra response from the upstream is
   * taken as the answer to the next request pipelined on that connection (responses are matched by order only).
   * @default 1
   */
  pipelining?: number
  /**
   * Idle keep-alive time of a connection when the server does not send `Keep-Alive: timeout`, in milliseconds.
   * @default 4000
   */
  keepAliveTimeout?: number
  /**
   * Cap on a server's `Keep-Alive: timeout` hint, in milliseconds: well under undici's 600 s so idle sockets
   * are not reused just as the server drops them.
   * @default 60000
   */
  keepAliveMaxTimeout?: number
  /**
   * Negotiate HTTP/2 over TLS (ALPN).
   * @default false
   */
  allowH2?: boolean
  /**
   * Headers sent with every call. Values with CR or LF are refused.
   * @default {}
   */
  headers?: Record<string, string>
  /** Timeouts in milliseconds; a number means `total`. */
  timeout?: number | TimeoutOptions
  /** TLS settings. */
  tls?: TlsOptions
  /**
   * Cache DNS lookups (undici `dns` interceptor). `true` uses the defaults of `DnsOptions`.
   * @default false
   */
  dns?: boolean | DnsOptions
  /**
   * Send calls through an HTTP proxy (undici `ProxyAgent`): plain http requests are forwarded, https ones tunnelled
   * with CONNECT; pool limits, timeouts, `tls` (for the upstream) and the whole pipeline still apply. `'env'` follows
   * `HTTP_PROXY` / `HTTPS_PROXY` (read when the service opens) and `NO_PROXY` (undici `EnvHttpProxyAgent`); `false`
   * turns off a proxy set in `defaults`. Proxy credentials never appear in logs, errors or stats. Cannot be combined
   * with `dns`, `socketPath` or a list of `baseUrl`.
   * @default false
   */
  proxy?: string | false | ProxyOptions
  /**
   * Largest body `json()`, `text()` and `arrayBuffer()` read, in bytes.
   * @default 10485760 (10 MiB)
   */
  maxResponseSize?: number
  /**
   * Ask for compressed responses (`accept-encoding: gzip, deflate, br` unless the headers set one) and decode gzip,
   * deflate and br bodies: `body` is the decoded stream, `content-encoding` and `content-length` are dropped from the
   * headers, and `maxResponseSize` counts decoded bytes. `false` passes bodies through as sent, `content-encoding`
   * included (for routes that proxy them); a call's own `decompress` overrides it.
   * @default true
   */
  decompress?: boolean
  /**
   * Same-origin redirects followed (0 = none). Cross-origin redirects are never followed: the 3xx is returned.
   * @default 0
   */
  followRedirects?: number
  /**
   * Inbound request headers copied onto every call made while handling that request.
   * @default []
   */
  forwardHeaders?: string[]
  /**
   * Reject responses with status >= 400 with `HttpStatusError`.
   * @default true
   */
  throwHttpErrors?: boolean
  /**
   * `HttpStatusError.statusCode` is the downstream status instead of 502.
   * @default false
   */
  passthroughStatus?: boolean
  /**
   * Retries, on by default: a number means `attempts`; `false` or `0` disables them.
   * @default { attempts: 3 }
   */
  retry?: number | false | RetryOptions
  /**
   * Circuit breaker, on by default (`true` or `undefined` use the defaults); `false` turns it off.
   * @default true
   */
  breaker?: boolean | BreakerOptions
  /**
   * Bulkhead (concurrency and queue bounds). Off by default.
   * @default false
   */
  bulkhead?: false | BulkheadOptions
  /**
   * Client-side rate limit. Off by default.
   * @default false
   */
  rateLimit?: false | RateLimitOptions
  /**
   * Hedged requests. Off by default.
   * @default false
   */
  hedge?: false | HedgeOptions
  /**
   * Identical GETs in flight (same path, query, headers and credentials) share one upstream request; each caller
   * gets its own response. Off by default.
   * @default false
   */
  coalesce?: boolean | CoalesceOptions
  /**
   * HTTP response cache (RFC 9111) for GET calls: `true` uses the defaults of `CacheOptions`. Off by default.
   * @default false
   */
  cache?: boolean | CacheOptions
  /** Runs when the breaker is open or the call finally fails; its result is the call's result. */
  fallback?: Fallback
  /**
   * Send the remaining time budget and attempt number to the upstream. Off by default.
   * @default false
   */
  deadlineHeaders?: boolean | DeadlineHeadersOptions
  /**
   * The credentials every call carries: exactly one of `bearer`, `apiKey`, `basic`, `forward`, `oauth2`. A service's
   * `auth` replaces the one in `defaults` (`false` turns it off); a call's `token` or `auth: false` overrides both.
   * Off by default.
   * @default false
   */
  auth?: false | AuthOptions
}

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

const perServiceOnly = 'only a service may set it, under services.<name>'

/**
 * The rows of `CommonServiceOptions`, the keys allowed both in `defaults` and per service. A key that takes a group
 * of its own defaults to `false` (off), `true` or `{}` (on with that group's defaults) or `undefined` (always on:
 * `timeout`, `tls`).
 */
export const commonServiceRows = {
  connections: { check: integer(1), default: 64 },
  pipelining: { check: integer(1), default: 1 },
  keepAliveTimeout: { check: positiveMs, default: 4000 },
  keepAliveMaxTimeout: { check: positiveMs, default: 60000 },
  allowH2: { check: boolean, default: false },
  headers: { check: record(serviceHeaderName, headerValue), default: {} },
  timeout: { check: timeoutOption, default: undefined },
  tls: { check: tlsOptions.check, default: undefined },
  dns: { check: booleanOr(dnsOptions.check), default: false },
  proxy: { check: proxyOption, default: false },
  maxResponseSize: { check: integer(1), default: 10 * 1024 * 1024 },
  decompress: { check: boolean, default: true },
  followRedirects: { check: integer(0), default: 0 },
  forwardHeaders: { check: arrayOf(forwardedHeaderName, 'an array of header names'), default: [] },
  throwHttpErrors: { check: boolean, default: true },
  passthroughStatus: { check: boolean, default: false },
  retry: { check: variants([(v) => typeof v === 'number', integer(0)], falseBranch, [isPlainObject, retryOptions.check]), default: {} },
  breaker: { check: booleanOr(breakerOptions.check), default: true },
  bulkhead: { check: falseOr(bulkheadOptions.check), default: false },
  rateLimit: { check: falseOr(rateLimitOptions.check), default: false },
  hedge: { check: falseOr(hedgeOptions.check), default: false },
  coalesce: { check: booleanOr(coalesceOptions.check), default: false },
  cache: { check: booleanOr(cacheOptions.check), default: false },
  fallback: { check: fn, default: undefined },
  deadlineHeaders: { check: booleanOr(deadlineHeadersOptions.check), default: false },
  auth: { check: authOption, default: false }
} satisfies Spec<CommonServiceOptions>

/** `defaults`: the service options every service inherits. */
export const commonServiceOptions = defineGroup(commonServiceRows, {
  hints: { baseUrl: perServiceOnly, critical: perServiceOnly, socketPath: perServiceOnly, webhook: perServiceOnly, healthPath: perServiceOnly }
})

/** What a decoding service asks for when its headers do not say (the encodings `decompress` decodes). */
export const kAcceptEncoding = 'gzip, deflate, br'

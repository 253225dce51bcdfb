import type { FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { Dispatcher } from 'undici'
import type { HttpServicesError } from '../errors'

/** Timeouts of one call, in milliseconds. A number given where a `TimeoutOptions` is accepted means `total`. */
export interface TimeoutOptions {
  /**
   * Time to open a TCP (and TLS) connection.
   * @default 5000
   */
  connect?: number
  /**
   * Time from sending the request to receiving the response headers (time to first byte), per attempt. Informational
   * (1xx) answers do not extend it past `headers` ms after the first of them.
   * @default 30000
   */
  headers?: number
  /**
   * Longest idle gap between two chunks of the response body. A body handed to the caller (`get()`, `stream()`) that
   * nobody starts to read within this time is discarded, with a warning, so it cannot hold its connection.
   * @default 30000
   */
  body?: number
  /**
   * Whole logical call: every attempt and every backoff sleep. `0` turns it off.
   * Off by default: each attempt is bounded by `connect`, `headers` and `body`, and retries by `retry`.
   * @default 0
   */
  total?: number
  /**
   * One attempt, its headers and its body: past it the attempt's request is aborted and the attempt fails with a
   * `TimeoutError` of phase `'attempt'`, which is retried like a headers timeout. `0` turns it off.
   * @default 0
   */
  attempt?: number
}

/** TLS settings for an https `baseUrl`. */
export interface TlsOptions {
  /**
   * Verify the server certificate. `false` logs a warning at start-up: use only for local development.
   * @default true
   */
  rejectUnauthorized?: boolean
  /** Trusted CA certificates: PEM text, or a path to a PEM file, or a list of either. */
  ca?: string | Buffer | Array<string | Buffer>
  /** Client certificate (PEM text or a file path) for mutual TLS. */
  cert?: string | Buffer
  /** Client private key (PEM text or a file path) for mutual TLS. */
  key?: string | Buffer
  /** Passphrase of `key`. */
  passphrase?: string
  /** Server name for SNI and certificate checking, when it differs from the host of `baseUrl`. */
  servername?: string
}

/** An HTTP proxy in object form (see `proxy`). */
export interface ProxyOptions {
  /**
   * The proxy: `http://[user:pass@]host:port` or `https://…` (credentials in the URL are sent as
   * `Proxy-Authorization: Basic`), or `'env'` for `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`.
   */
  uri: string
  /** Headers sent to the proxy with each CONNECT and each forwarded request. Their values are treated as secrets. */
  headers?: Record<string, string>
  /** TLS settings for an https proxy (the upstream's are the service's `tls`). */
  tls?: TlsOptions
  /** The whole `Proxy-Authorization` value (e.g. `'Bearer …'`), instead of credentials in `uri`. A secret. */
  token?: string
}

/** DNS caching through undici's `dns` interceptor. */
export interface DnsOptions {
  /**
   * How long a resolved address is reused, in milliseconds.
   * @default 10000
   */
  ttl?: number
  /**
   * Most host names kept.
   * @default 100
   */
  maxItems?: number
  /**
   * Resolve both IPv4 and IPv6 and alternate between them.
   * @default true
   */
  dualStack?: boolean
}

/** Retry with exponential backoff (see the README "Resilience" section). */
export interface RetryOptions {
  /**
   * Retries after the first try. `0` disables retries.
   * @default 3
   */
  attempts?: number
  /**
   * First backoff delay in milliseconds.
   * @default 500
   */
  baseDelay?: number
  /**
   * Largest backoff delay in milliseconds.
   * @default 30000
   */
  maxDelay?: number
  /**
   * Growth factor of the backoff.
   * @default 2
   */
  factor?: number
  /**
   * Jitter: `'full'` (random between 0 and the delay, AWS "full jitter"), `'equal'` (half fixed, half random) or `'none'`.
   * @default 'full'
   */
  jitter?: 'full' | 'equal' | 'none'
  /**
   * Computes the delay of retry number `attempt` (1-based) after `error` (the error thrown, or the `HttpResponse`
   * whose status is retried); overrides the backoff. A `Retry-After` from the upstream still wins.
   */
  delay?: (attempt: number, error: unknown) => number
  /**
   * Response statuses that are retried.
   * @default [408, 429, 500, 502, 503, 504]
   */
  statusCodes?: number[]
  /**
   * Methods that are retried whatever the failure. POST and PATCH are retried only when the request was never
   * sent or carries an `Idempotency-Key`.
   * @default ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']
   */
  methods?: string[]
  /**
   * Longest `Retry-After` / `X-RateLimit-Reset` wait that is slept, in milliseconds; longer waits fail at once.
   * @default 60000
   */
  maxRetryAfter?: number
  /**
   * Generate an `Idempotency-Key` header per logical call (the same on every attempt) so POST/PATCH may be retried.
   * @default false
   */
  idempotencyKey?: boolean
  /**
   * Retry budget: retries (and hedged attempts) may add at most `ratio` of the service's recent request rate, with a
   * floor of `minPerSecond`; past it a failure is returned as it is. `false` turns it off. Per call, `ratio` and
   * `minPerSecond` apply to the service's window and `false` skips the budget.
   */
  budget?: false | RetryBudgetOptions
}

export interface RetryBudgetOptions {
  /**
   * Retries allowed per request, over the window.
   * @default 0.2
   */
  ratio?: number
  /**
   * Retries per second always allowed.
   * @default 3
   */
  minPerSecond?: number
  /**
   * Window in milliseconds over which requests and retries are counted (the service's only: a call cannot change it).
   * @default 10000
   */
  window?: number
}

/**
 * Circuit breaker (opossum), one per service: with a list of `baseUrl`s too, as the BalancedPool does not say which
 * upstream answered. Failures are 5xx, 408 and 429 answers, timeouts of an attempt and connection or TLS failures.
 */
export interface BreakerOptions {
  /**
   * Percentage of failed calls in the window above which the breaker opens.
   * @default 50
   */
  errorPercentage?: number
  /**
   * Calls needed in the window before the breaker may open.
   * @default 20
   */
  minimumRequests?: number
  /**
   * Length of the rolling window in milliseconds.
   * @default 10000
   */
  window?: number
  /**
   * Buckets of the rolling window.
   * @default 10
   */
  windowBuckets?: number
  /**
   * Time the breaker stays open before it lets one probe through (half-open), in milliseconds.
   * @default 30000
   */
  resetAfter?: number
}

/** Bounds calls in flight and waiting, per service. */
export interface BulkheadOptions {
  /** Most calls in flight at once. */
  maxConcurrent: number
  /**
   * Most calls waiting for a slot; more are rejected with `BulkheadRejectedError`.
   * @default 0
   */
  maxQueue?: number
  /**
   * Longest wait for a slot in milliseconds.
   * @default 10000
   */
  queueTimeout?: number
}

/** Client-side rate limit: a token bucket (`rate` per `interval`) or a sliding window (`limit` per `window`). */
export interface RateLimitOptions {
  /** Token bucket: tokens added per `interval`. */
  rate?: number
  /**
   * Token bucket: refill interval in milliseconds.
   * @default 1000
   */
  interval?: number
  /**
   * Token bucket: capacity.
   * @default rate
   */
  burst?: number
  /** Sliding window: calls allowed per `window`. */
  limit?: number
  /** Sliding window: length in milliseconds. */
  window?: number
  /**
   * Longest wait for permission in milliseconds; after it `RateLimitedError`.
   * @default 0
   */
  maxWait?: number
  /** Halve the rate on a 429 from upstream and climb back additively on success. */
  adaptive?: boolean | AdaptiveRateOptions
}

export interface AdaptiveRateOptions {
  /**
   * Lowest rate as a fraction of the configured one.
   * @default 0.1
   */
  floor?: number
  /**
   * Highest rate as a fraction of the configured one.
   * @default 1
   */
  ceiling?: number
  /**
   * Fraction of the configured rate added back after each success.
   * @default 0.05
   */
  increase?: number
}

/** Hedged requests for idempotent methods. */
export interface HedgeOptions {
  /** Milliseconds without a response before another attempt is sent. */
  delay: number
  /**
   * Most extra attempts.
   * @default 1
   */
  maxHedges?: number
}

/** Outbound headers telling the upstream how much time is left and which attempt this is. */
export interface DeadlineHeadersOptions {
  /**
   * Header carrying the remaining milliseconds.
   * @default 'x-request-timeout-ms'
   */
  remaining?: string | false
  /**
   * Header carrying the attempt number (1-based).
   * @default 'x-attempt'
   */
  attempt?: string | false
}

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
  /** Headers sent with every call. Values with CR or LF are refused. */
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
  /** Inbound request headers copied onto every call made while handling that request. */
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
  /** Retries: a number means `attempts`; `false` or `0` disables them. */
  retry?: number | false | RetryOptions
  /** Circuit breaker; `true` uses the defaults. Off by default. */
  breaker?: boolean | BreakerOptions
  /** Bulkhead (concurrency and queue bounds). Off by default. */
  bulkhead?: false | BulkheadOptions
  /** Client-side rate limit. Off by default. */
  rateLimit?: false | RateLimitOptions
  /** Hedged requests. Off by default. */
  hedge?: false | HedgeOptions
  /** Runs when the breaker is open or the call finally fails; its result is the call's result. */
  fallback?: Fallback
  /** Send the remaining time budget and attempt number to the upstream. Off by default. */
  deadlineHeaders?: boolean | DeadlineHeadersOptions
}

/** One downstream service. */
export interface ServiceOptions extends CommonServiceOptions {
  /** Base URL (http or https), with an optional base path. A list spreads calls over several upstreams (BalancedPool). */
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
}

/** The service-independent part of the options. */
export interface HttpServicesOptions {
  /** The services by name. */
  services?: Record<string, ServiceOptions>
  /** Options applied to every service unless the service sets them. */
  defaults?: CommonServiceOptions
  /** A YAML or JSON file with the same shape; `${NAME}` and `${NAME:-default}` are read from the environment. */
  configFile?: string
  /**
   * How long `close()` waits for calls in flight before aborting them, in milliseconds.
   * @default 10000
   */
  closeTimeout?: number
  /**
   * Header carrying `request.id` to downstream calls (Fastify takes the id from an inbound header only when its own
   * `requestIdHeader` option trusts one).
   * `false` turns it off.
   * @default 'x-request-id'
   */
  requestIdHeader?: string | false
  /**
   * Time budget of an inbound request in milliseconds: calls made while handling it never outlive it. `0` = none.
   * @default 0
   */
  requestDeadline?: number
  /**
   * Inbound header whose value (milliseconds) sets the request's budget, capped by `requestDeadline` when both are set.
   * `false` ignores inbound headers.
   * @default false
   */
  deadlineHeader?: string | false
  /**
   * A dispatcher used for every service instead of their own pools (e.g. undici `MockAgent`). It is not closed by
   * this library. The mock kit (`fastify-http-services/testing`) sets it for you.
   */
  dispatcher?: Dispatcher
  /**
   * Registers @fastify/under-pressure (plugin only): a health check that fails while a `critical` service's breaker
   * is open, and a status route (`/status` unless `exposeStatusRoute` says otherwise) whose body carries
   * `httpServices` stats. `true` uses under-pressure's defaults; an object is passed to it (a `healthCheck` of your
   * own runs after ours). Off by default.
   * @default false
   */
  underPressure?: boolean | UnderPressureOptions
}

/** Options of @fastify/under-pressure, as the `underPressure` plugin option takes them. */
export type UnderPressureOptions = FastifyUnderPressureOptions

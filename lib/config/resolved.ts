import type { Dispatcher } from 'undici'
import type { Fallback, UnderPressureOptions } from './types'

/** Options of one service after validation, merging with `defaults` and filling built-in defaults. */
export interface ResolvedService {
  name: string
  /** Origins (`scheme://host:port`) of the upstreams; more than one means a BalancedPool. */
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
  /** `attempt` is only present when set (absent or 0: no attempt timeout). */
  timeout: { connect: number, headers: number, body: number, total: number, attempt?: number }
  tls: ResolvedTls | undefined
  dns: { ttl: number, maxItems: number, dualStack: boolean } | undefined
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
  bulkhead: { maxConcurrent: number, maxQueue: number, queueTimeout: number } | undefined
  rateLimit: ResolvedRateLimit | undefined
  hedge: { delay: number, maxHedges: number } | undefined
  fallback: Fallback | undefined
  deadlineHeaders: { remaining: string | false, attempt: string | false } | undefined
  critical: boolean
  /** Present when calls go through a proxy. */
  proxy?: ResolvedProxy
  /** Present when the service is reached over a Unix domain socket (or named pipe). */
  socketPath?: string
}

/** A proxy after resolution. `uri`, `token` and `headers` hold secrets and are not enumerable, so they stay out of logs. */
export interface ResolvedProxy {
  /** `'env'`, or the proxy URL with its credentials. */
  readonly uri: string
  readonly token: string | undefined
  /** Lower-case names. */
  readonly headers: Record<string, string>
  /** TLS settings for an https proxy. */
  readonly tls: ResolvedTls | undefined
  /** `'env'` or `scheme://host:port`: the proxy as logs and stats may show it. */
  readonly display: string
}

export interface ResolvedTls {
  rejectUnauthorized: boolean
  /** File paths already read. */
  ca?: Array<string | Buffer>
  cert?: string | Buffer
  key?: string | Buffer
  passphrase?: string
  servername?: string
}

export interface ResolvedRetry {
  attempts: number
  baseDelay: number
  maxDelay: number
  factor: number
  jitter: 'full' | 'equal' | 'none'
  delay: ((attempt: number, error: unknown) => number) | undefined
  statusCodes: number[]
  methods: string[]
  maxRetryAfter: number
  idempotencyKey: boolean
  budget: { ratio: number, minPerSecond: number, window: number } | undefined
}

export interface ResolvedBreaker {
  errorPercentage: number
  minimumRequests: number
  window: number
  windowBuckets: number
  resetAfter: number
}

export interface ResolvedRateLimit {
  kind: 'token-bucket' | 'sliding-window'
  /** Token bucket: tokens per interval; sliding window: calls per window. */
  rate: number
  /** Token bucket: refill interval; sliding window: window length (ms). */
  interval: number
  /** Token bucket capacity (sliding window: equal to rate). */
  burst: number
  maxWait: number
  adaptive: { floor: number, ceiling: number, increase: number } | undefined
}

/** The whole option set after resolution. */
export interface ResolvedOptions {
  services: Map<string, ResolvedService>
  closeTimeout: number
  requestIdHeader: string | false
  requestDeadline: number
  deadlineHeader: string | false
  dispatcher: Dispatcher | undefined
  /** Options for @fastify/under-pressure; `undefined` when it is not registered. */
  underPressure: UnderPressureOptions | undefined
}

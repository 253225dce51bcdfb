import type { Dispatcher } from 'undici'
import { performance } from 'node:perf_hooks'
import { discardRequestBody } from './call'
import { CallSignal } from './call-signal'
import type { ResolvedService } from './config/resolved'
import { fixedAuthHeader } from './config/options/auth'
import { callChannel } from './diagnostics/channels'
import type { CallMessage } from './diagnostics/messages'
import { callResponded, endCall, runCallStart, startCall } from './diagnostics/publish'
import { createDispatcher, poolMadeOnFirstCall } from './dispatcher'
import {
  BulkheadRejectedError,
  CircuitOpenError,
  ClientClosedError,
  HttpStatusError,
  RateLimitedError,
  RequestAbortedError,
  TimeoutError,
  TransportError,
  type HttpServicesError
} from './errors'
import { statusError } from './error-detail'
import { buildChain, perCallRouting, type Chain, type PerCallRouting } from './pipeline'
import { transport } from './pipeline/transport'
import { sharedClosedError } from './transport-errors'
import { UnreadBodies } from './unread-body'
import { kBreakerView, type BreakerView, type CallContext, type Logger, type Outcome, type ServiceClient, type ServiceCounters, type ServiceRuntime } from './pipeline/types'
import type { HttpResponse } from './response'
import type { RedisConnection } from './redis/connection'
import type { RedisStats } from './redis/stats'

/** The calls of a service that ended in an error, by the kind of error (`stats().failuresBy`). */
export interface FailureCounts {
  /** `HttpStatusError`: the downstream answered with an error status the call throws on. */
  status: number
  /** `TimeoutError`, any phase (connect, headers, body, attempt, total, bulkhead queue). */
  timeout: number
  /** `ConnectionError`, `TlsError` and other transport failures (no usable response). */
  connection: number
  /** `CircuitOpenError`: refused by an open breaker without reaching the downstream. */
  breakerOpen: number
  /** `BulkheadRejectedError`: the bulkhead and its queue were full. */
  bulkheadRejected: number
  /** `RateLimitedError`: no rate-limit permit within `maxWait`. */
  rateLimited: number
  /** `RequestAbortedError`: the caller's signal, or the inbound request's client going away. */
  aborted: number
  /** Anything else that failed a call once it started: a body that is not JSON, a throwing option callback. */
  other: number
}

/** A snapshot of one service, as `stats()` returns it. */
export interface ServiceStats {
  name: string
  origins: string[]
  /** Where the service's client is in its life: `created` (not open yet), `open`, `closing`, `closed`. */
  lifecycle: 'created' | 'open' | 'closing' | 'closed'
  /** Policies in the service's chain, outermost first. */
  policies: string[]
  /** Logical calls made (retries and hedges are attempts of one call). */
  requests: number
  /** Requests sent to the downstream (every retry and hedge). */
  attempts: number
  /** Calls that ended in an error, whatever the error; `failuresBy` splits them by kind. */
  failures: number
  failuresBy: FailureCounts
  /** Calls waiting for their response headers now. */
  inFlight: number
  /** undici pool counters (connected, free, pending, queued, running, size) when the pool exposes them. */
  pool?: Record<string, number>
  /** For a service keeping state in Redis (`cache.store: 'redis'`, `rateLimit.shared`, `breaker.shared`). */
  redis?: RedisStats
  [policy: string]: unknown
}

type State = ServiceStats['lifecycle']

function noFailures (): FailureCounts {
  return { status: 0, timeout: 0, connection: 0, breakerOpen: 0, bulkheadRejected: 0, rateLimited: 0, aborted: 0, other: 0 }
}

/** The `failuresBy` entry of an error that ended a call. */
function failureKind (err: unknown): keyof FailureCounts {
  if (err instanceof HttpStatusError) return 'status'
  if (err instanceof TimeoutError) return 'timeout'
  if (err instanceof TransportError) return 'connection'
  if (err instanceof CircuitOpenError) return 'breakerOpen'
  if (err instanceof BulkheadRejectedError) return 'bulkheadRejected'
  if (err instanceof RateLimitedError) return 'rateLimited'
  if (err instanceof RequestAbortedError) return 'aborted'
  return 'other'
}

/** What `run` makes of the response a call's pipeline answers with: one of `HttpService.finisher`'s four functions. */
export type Finisher = (res: HttpResponse) => HttpResponse | Promise<HttpResponse>

/**
 * Where a call's chain reports its end (`run`): the caller's promise, settled with `finish` of the response, or with
 * the error (counted by `failed`, which throws it). One object per call, in place of a promise reaction.
 *
 * With `message` (a call published on the call's TracingChannel, `HttpService.runPublished`), the message is told the
 * response (`callResponded`), and the call's end is published (`endCall`) once the caller's outcome is known, just
 * before the caller's promise settles with it.
 */
class CallOutcome implements Outcome {
  constructor (
    private readonly finish: Finisher,
    private readonly failed: (err: unknown) => never,
    private readonly resolve: (value: HttpResponse | Promise<HttpResponse>) => void,
    private readonly reject: (err: unknown) => void,
    private readonly message: CallMessage | undefined
  ) {}

  resolved (_ctx: CallContext, res: HttpResponse): void {
    const message = this.message
    if (message !== undefined) callResponded(message, res)
    let outcome: HttpResponse | Promise<HttpResponse>
    try {
      outcome = this.finish(res)
    } catch (err) {
      this.fail(err)
      return
    }
    if (message === undefined) {
      this.resolve(outcome)
      return
    }
    // A body the transport left as a stream is read now (rare): its end is the call's.
    if (outcome instanceof Promise) outcome.then((value) => { this.published(message, value) }, (err: unknown) => { this.fail(err) })
    else this.published(message, outcome)
  }

  rejected (ctx: CallContext, err: unknown): void {
    // A stream body is destroyed when the call fails, wherever it failed.
    discardRequestBody(ctx.body)
    try {
      this.failed(err)
    } catch (thrown) {
      this.fail(thrown)
    }
  }

  private published (message: CallMessage, value: HttpResponse): void {
    endCall(message, false, undefined)
    this.resolve(value)
  }

  private fail (err: unknown): void {
    if (this.message !== undefined) endCall(this.message, true, err)
    this.reject(err)
  }
}

/** One downstream: its dispatcher and its pipeline. */
export class HttpService implements ServiceRuntime {
  readonly name: string
  readonly options: ResolvedService
  readonly log: Logger
  readonly counters: ServiceCounters = { requests: 0, attempts: 0, failures: 0, inFlight: 0 }
  /** The dispatcher once made (see `dispatcher`). */
  private made: Dispatcher | undefined = undefined
  /** Set once `close()` took the dispatcher to close it: no other may be made after. */
  private sealed = false
  /** The chain for calls with no per-call policy options. */
  handler: Chain
  private perCallHandler: Chain | undefined = undefined
  private readonly policyNames: string[]
  private readonly statsFns: Array<[string, () => unknown]> = []
  private readonly sharedState = new Map<string, unknown>()
  private readonly closeHooks: Array<() => void> = []
  private readonly resetHooks: Array<() => void> = []
  private failuresBy: FailureCounts = noFailures()
  private state: State = 'created'
  private readonly injected: Dispatcher | undefined
  private drained: (() => void) | undefined = undefined
  /** Aborted when `closeTimeout` passes: calls waiting in the pipeline (retry backoff, bulkhead, rate limit) end. */
  readonly closing = new CallSignal()
  /** The registry the service belongs to (set by it): the diagnostics messages carry it, to tell apps apart. */
  registry: object | undefined = undefined
  /** Bodies handed to callers and not read yet: discarded past `timeout.body` or once their response is collected. */
  private readonly unreadBodies: UnreadBodies

  /**
   * The headers every call starts from: the service's `headers` and, for a scheme fixed at start-up, its credential
   * (`fixedAuthHeader`). Kept off `options`, which logs and stats may show.
   */
  get requestHeaders (): Record<string, string> {
    return this.#requestHeaders
  }

  // Private: `util.inspect(service)` must not show a credential (a fixed scheme's header is among these).
  readonly #requestHeaders: Record<string, string>

  /** @internal Which calls take `perCall` instead of `handler`: the client tests it on every call with options or a deadline. */
  readonly perCallRouting: PerCallRouting
  private readonly clientOf: (name: string) => ServiceClient

  /** The registry's Redis connection, when it has one (the `redis` option). */
  readonly redis: RedisConnection | undefined

  /** `clientOf` is the registry's: a client of one of its services, by name (`client()`). */
  constructor (
    options: ResolvedService, log: Logger, injected: Dispatcher | undefined, clientOf: (name: string) => ServiceClient,
    redis?: RedisConnection
  ) {
    this.name = options.name
    this.redis = redis
    this.options = options
    this.log = log.child({ service: options.name })
    this.unreadBodies = new UnreadBodies(this.log, options.timeout.body)
    this.injected = injected
    this.clientOf = clientOf
    const credential = fixedAuthHeader(options.auth)
    this.#requestHeaders = credential === undefined ? options.headers : { ...options.headers, [credential[0]]: credential[1] }
    const chain = buildChain(this, transport(this), false)
    this.handler = chain.chain
    this.policyNames = chain.names
    this.perCallRouting = perCallRouting(chain.names)
  }

  /**
   * The chain for calls passing a call option of a policy `handler` lacks, or an inbound deadline while `handler` has
   * no deadline policy (`perCallRouting`); built on first use.
   */
  get perCall (): Chain {
    if (this.perCallHandler === undefined) this.perCallHandler = buildChain(this, transport(this), true).chain
    return this.perCallHandler
  }

  /** A client of the registry's service `name`, for a policy that calls it (`ServiceRuntime.client`). */
  client (name: string): ServiceClient {
    return this.clientOf(name)
  }

  shared<T> (key: string, create: () => T): T {
    let value = this.sharedState.get(key) as T | undefined
    if (value === undefined) {
      value = create()
      this.sharedState.set(key, value)
    }
    return value
  }

  sharedIf<T> (key: string): T | undefined {
    return this.sharedState.get(key) as T | undefined
  }

  addStats (key: string, fn: () => unknown): void {
    this.statsFns.push([key, fn])
  }

  onClose (fn: () => void): void {
    this.closeHooks.push(fn)
  }

  onReset (fn: () => void): void {
    this.resetHooks.push(fn)
  }

  /**
   * Forgets what the service learnt, as if it had just opened: its counters (`requests`, `attempts`, `failures`;
   * not `inFlight`), and through its policies' reset hooks its breakers (closed, their window emptied), retry budget
   * and counts, rate limiter (refilled, adaptive rate back to the start), bulkhead and fallback counters. Calls in
   * flight go on: they keep their bulkhead slots and rate-limit turns, and their outcomes count in the new window.
   * For tests that share one app (`mocks.reset()` calls it); nothing else calls it.
   */
  reset (): void {
    const c = this.counters
    c.requests = 0
    c.attempts = 0
    c.failures = 0
    this.failuresBy = noFailures()
    for (const fn of this.resetHooks) fn()
  }

  /**
   * The dispatcher: the injected one, or the service's own, made when the service opens, or for a plain `Pool` on the
   * first call (see `poolMadeOnFirstCall`). `undefined` before `open()` and after `close()` took it.
   */
  get dispatcher (): Dispatcher | undefined {
    if (this.made === undefined && !this.sealed && (this.state === 'open' || this.state === 'closing')) {
      this.made = createDispatcher(this.options)
    }
    return this.made
  }

  get injectedDispatcher (): Dispatcher | undefined {
    return this.injected
  }

  get isOpen (): boolean {
    return this.state === 'open'
  }

  /** Creates the dispatcher. Idempotent. */
  open (): void {
    if (this.state !== 'created') return
    if (this.options.tls?.rejectUnauthorized === false) {
      this.log.warn({}, 'TLS certificate verification is off for this service (tls.rejectUnauthorized: false)')
    }
    this.made = this.injected ?? (poolMadeOnFirstCall(this.options) ? undefined : createDispatcher(this.options))
    this.state = 'open'
  }

  /**
   * What `run` makes of a call's response: the response itself, or its JSON body parsed (`json`: the *Json helpers);
   * either way an error status is thrown as `HttpStatusError` when `throwHttpErrors`. Four functions made once per
   * service: picking one costs a call nothing.
   */
  finisher (json: boolean, throwHttpErrors: boolean): Finisher {
    if (json) return throwHttpErrors ? this.asJsonOrThrow : this.asJson
    return throwHttpErrors ? this.asResponseOrThrow : this.asResponse
  }

  /**
   * Runs one call through `handler`, counting it in flight until its response (not its body) is back; `finish` (see
   * `finisher`) makes the caller's outcome of the response.
   *
   * Not an async function: the chain runs in callback form (`./pipeline/chain`) and reports to one `CallOutcome`,
   * which settles the caller's promise, the only promise of the call on this level (an async function's frame is
   * several hundred bytes per call in flight). While something subscribes to the call's diagnostics channel, the
   * call takes `runPublished` instead.
   */
  run (ctx: CallContext, handler: Chain, finish: Finisher): Promise<HttpResponse> {
    if (this.state !== 'open') {
      discardRequestBody(ctx.body)
      return Promise.reject(this.closedError(ctx))
    }
    if (callChannel.hasSubscribers) return this.runPublished(ctx, handler, finish)
    const c = this.counters
    c.requests++
    c.inFlight++
    return new Promise<HttpResponse>((resolve, reject) => {
      handler.layer(ctx, new CallOutcome(finish, this.failed, resolve, reject, undefined))
    })
  }

  /**
   * `run`, published on the call's TracingChannel (`./diagnostics/channels`): `start` runs the chain with the stores
   * subscribers bound to it, so its async work inherits them (the transport's report of each attempt too); the
   * outcome is published once the caller's is known, before the caller's promise settles. In callback form, as `run`:
   * a `CallOutcome` with the call's message in place of the promise stages it took before (about a fifth of what publishing cost).
   */
  private runPublished (ctx: CallContext, handler: Chain, finish: Finisher): Promise<HttpResponse> {
    const message = startCall(ctx)
    const c = this.counters
    c.requests++
    c.inFlight++
    return new Promise<HttpResponse>((resolve, reject) => {
      runCallStart(message, handler.layer, ctx, new CallOutcome(finish, this.failed, resolve, reject, message))
    })
  }

  /** `finisher(false, false)`: the response as it is. */
  private readonly asResponse: Finisher = (res) => {
    this.settled()
    return this.unreadBodies.watch(res)
  }

  /** `finisher(false, true)`: the response, an error status thrown as `HttpStatusError`. */
  private readonly asResponseOrThrow: Finisher = (res) => {
    this.settled()
    return res.status < 400 ? this.unreadBodies.watch(res) : this.statusError(res)
  }

  /** `finisher(true, false)`: the JSON body, whatever the status. */
  private readonly asJson: Finisher = (res) => {
    this.settled()
    return this.readJson(res)
  }

  /** `finisher(true, true)`: the JSON body, an error status thrown as `HttpStatusError`. */
  private readonly asJsonOrThrow: Finisher = (res) => {
    this.settled()
    return res.status < 400 ? this.readJson(res) : this.statusError(res)
  }

  private readonly failed = (err: unknown): never => {
    this.countFailure(err)
    this.settled()
    throw err
  }

  /** The *Json helpers' body: parsed at once when the transport gathered it (a try costs nothing when nothing throws). */
  private readJson (res: HttpResponse): HttpResponse {
    let value: unknown
    try {
      value = res.readJson()
    } catch (err) {
      this.countFailure(err)
      throw err
    }
    // A body the transport left as a stream (an error status the call does not throw on) is read now: rare.
    if (value instanceof Promise) return value.then(undefined, this.failedLate) as unknown as HttpResponse
    return value as HttpResponse
  }

  /** A call that failed after its response was counted as settled (its body could not be read or parsed). */
  private readonly failedLate = (err: unknown): never => {
    this.countFailure(err)
    throw err
  }

  /**
   * Counts a call's final error by kind; when the service's breaker is not closed, the error says so (`breaker:
   * 'open' | 'halfOpen'`), so a 503 that opened the breaker, or that a retry gave up on because it had opened, is
   * told apart from one of a healthy upstream. Only on the failure path.
   */
  private countFailure (err: unknown): void {
    this.counters.failures++
    const kind = failureKind(err)
    this.failuresBy[kind]++
    if (kind === 'status' || kind === 'timeout' || kind === 'connection' || kind === 'breakerOpen') {
      const breaker = this.sharedIf<BreakerView>(kBreakerView)
      if (breaker !== undefined && breaker.state !== 'closed') (err as HttpServicesError).breaker = breaker.state
    }
  }

  private settled (): void {
    const c = this.counters
    c.inFlight--
    if (c.inFlight === 0 && this.drained !== undefined) this.drained()
  }

  private async statusError (res: HttpResponse): Promise<never> {
    const e = await statusError(res, this.options.passthroughStatus)
    this.countFailure(e)
    throw e
  }

  private closedError (ctx: CallContext): Error {
    const e = new ClientClosedError(`${this.name}: service client is ${this.state === 'created'
      ? 'not open yet: await app.ready() first (or await services.open() without Fastify)'
      : 'closed'}`)
    e.service = this.name
    e.method = ctx.method
    return e
  }

  /**
   * Refuses new calls and lets the calls in the pipeline (waiting for headers, in a retry backoff, the bulkhead queue
   * or a rate-limit wait) finish on the open dispatcher, then closes the dispatcher (undici waits for bodies being
   * read), all within `timeout` ms. When the time is up, calls still waiting in the pipeline end with
   * `ClientClosedError` (the `closing` signal clears their timers) and the dispatcher is destroyed, aborting what
   * is left. An injected dispatcher is left open.
   */
  async close (timeout: number): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return
    const wasOpen = this.state === 'open'
    this.state = 'closing'
    if (wasOpen) {
      const end = performance.now() + timeout
      let done = this.counters.inFlight === 0 || await within(timeout, (resolve) => { this.drained = resolve })
      this.drained = undefined
      this.sealed = true
      const dispatcher = this.injected === undefined ? this.made : undefined
      if (done && dispatcher !== undefined) {
        done = await within(end - performance.now(), (resolve) => { dispatcher.close().then(resolve, resolve) })
      }
      if (!done) {
        this.log.warn({ inFlight: this.counters.inFlight, closeTimeout: timeout },
          'calls still in flight after closeTimeout: aborting them')
        const reason = sharedClosedError(`${this.name}: service client closed (closeTimeout ${timeout} ms passed)`)
        this.closing.abort(reason)
        await dispatcher?.destroy(reason).catch(() => {})
      }
    }
    this.state = 'closed'
    this.unreadBodies.clear()
    for (const fn of this.closeHooks) fn()
  }

  stats (): ServiceStats {
    const c = this.counters
    const s: ServiceStats = {
      name: this.name,
      origins: this.options.origins,
      lifecycle: this.state,
      policies: this.policyNames,
      requests: c.requests,
      attempts: c.attempts,
      failures: c.failures,
      failuresBy: { ...this.failuresBy },
      inFlight: c.inFlight
    }
    // A pool not made yet (no call so far) has nothing to show: the figures of an empty one.
    const pool = this.made === undefined && this.state === 'open'
      ? kEmptyPool
      : (this.made as { stats?: Record<string, unknown> } | undefined)?.stats
    if (pool !== undefined && typeof pool === 'object') {
      if (typeof pool.connected === 'number') {
        const { connected, free, pending, queued, running, size } = pool as Record<string, number>
        s.pool = { connected, free, pending, queued, running, size }
      } else {
        // An Agent (several upstreams and a breaker) keys its pools' stats by origin: `pool` sums them, `pools` has each.
        const sum: Record<string, number> = { connected: 0, free: 0, pending: 0, queued: 0, running: 0, size: 0 }
        const pools: Record<string, Record<string, number>> = {}
        for (const [origin, p] of Object.entries(pool as Record<string, Record<string, number>>)) {
          const { connected, free, pending, queued, running, size } = p
          pools[origin] = { connected, free, pending, queued, running, size }
          for (const key in sum) sum[key] += p[key] ?? 0
        }
        s.pool = sum
        s.pools = pools
      }
    }
    if (this.options.proxy !== undefined) s.proxy = this.options.proxy.display
    for (const [key, fn] of this.statsFns) s[key] = fn()
    return s
  }
}

const kEmptyPool: Readonly<Record<string, number>> = Object.freeze({ connected: 0, free: 0, pending: 0, queued: 0, running: 0, size: 0 })

/** Resolves `true` once `start` calls back, or `false` when `ms` pass first (the timer is then cleared either way). */
function within (ms: number, start: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms), false)
    start(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

import type { Dispatcher } from 'undici'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { discardRequestBody } from './call'
import { CallSignal } from './call-signal'
import type { ResolvedService } from './config/resolved'
import { createDispatcher } from './dispatcher'
import { ClientClosedError } from './errors'
import { statusError } from './error-detail'
import { buildChain } from './pipeline'
import { transport } from './pipeline/transport'
import { sharedClosedError } from './transport-errors'
import type { CallContext, Logger, Next, ServiceCounters, ServiceRuntime } from './pipeline/types'
import type { HttpResponse } from './response'

/** A snapshot of one service, as `stats()` returns it. */
export interface ServiceStats {
  name: string
  origins: string[]
  state: 'created' | 'open' | 'closing' | 'closed'
  /** Policies in the service's chain, outermost first. */
  policies: string[]
  requests: number
  attempts: number
  failures: number
  inFlight: number
  /** undici pool counters (connected, free, pending, queued, running, size) when the pool exposes them. */
  pool?: Record<string, number>
  [policy: string]: unknown
}

type State = ServiceStats['state']

/**
 * What `run` makes of a response, as bit flags: 1 = reject a status >= 400 with `HttpStatusError`, 2 = resolve with
 * the parsed JSON body instead of the response.
 */
export type Finish = 0 | 1 | 2 | 3

/** One downstream: its dispatcher and its pipeline. */
export class HttpService implements ServiceRuntime {
  readonly name: string
  readonly options: ResolvedService
  readonly log: Logger
  readonly counters: ServiceCounters = { requests: 0, attempts: 0, failures: 0, inFlight: 0 }
  dispatcher: Dispatcher | undefined = undefined
  /** The chain for calls with no per-call policy options. */
  handler: Next
  private perCallHandler: Next | undefined = undefined
  private readonly policyNames: string[]
  private readonly statsFns: Array<[string, () => unknown]> = []
  private readonly sharedState = new Map<string, unknown>()
  private readonly closeHooks: Array<() => void> = []
  private state: State = 'created'
  private readonly injected: Dispatcher | undefined
  private drained: (() => void) | undefined = undefined
  /** Aborted when `closeTimeout` passes: calls waiting in the pipeline (retry backoff, bulkhead, rate limit) end. */
  readonly closing = new CallSignal()

  constructor (options: ResolvedService, log: Logger, injected?: Dispatcher) {
    this.name = options.name
    this.options = options
    this.log = log.child({ service: options.name })
    this.injected = injected
    const chain = buildChain(this, transport(this), false)
    this.handler = chain.handler
    this.policyNames = chain.names
  }

  /** The chain that honours per-call `timeout` / `retry` options and inbound deadlines; built on first use. */
  get perCall (): Next {
    if (this.perCallHandler === undefined) this.perCallHandler = buildChain(this, transport(this), true).handler
    return this.perCallHandler
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

  get isOpen (): boolean {
    return this.state === 'open'
  }

  /** Creates the dispatcher. Idempotent. */
  open (): void {
    if (this.state !== 'created') return
    if (this.options.tls?.rejectUnauthorized === false) {
      this.log.warn({}, 'TLS certificate verification is off for this service (tls.rejectUnauthorized: false)')
    }
    this.dispatcher = this.injected ?? createDispatcher(this.options)
    this.state = 'open'
  }

  /**
   * Runs one call through `handler`, counting it in flight until its response (not its body) is back. `finish`
   * says what the caller wants of the response: as it is, error statuses thrown (`HttpStatusError`), and/or the
   * body parsed as JSON (the *Json helpers).
   *
   * Not an async function, and settled by functions made once per service: a call costs one promise here, no
   * frame and no closure (an async function's frame is several hundred bytes per call in flight).
   */
  run (ctx: CallContext, handler: Next, finish: Finish): Promise<HttpResponse> {
    if (this.state !== 'open') {
      discardRequestBody(ctx.body)
      return Promise.reject(this.closedError(ctx))
    }
    const c = this.counters
    c.requests++
    c.inFlight++
    let promise: Promise<HttpResponse>
    try {
      promise = handler(ctx)
    } catch (err) {
      promise = Promise.reject(err)
    }
    // A stream body (rare: a closure for it is fine) is destroyed when the call fails, wherever it failed.
    if (ctx.body instanceof Readable) {
      return promise.then(this.finishers[finish], (err: unknown) => {
        discardRequestBody(ctx.body)
        return this.failed(err)
      })
    }
    return promise.then(this.finishers[finish], this.failed)
  }

  /** The `run` continuations, indexed by `Finish`. */
  private readonly finishers: ReadonlyArray<(res: HttpResponse) => HttpResponse | Promise<HttpResponse>> = [
    (res) => {
      this.settled()
      return res
    },
    (res) => {
      this.settled()
      return res.status < 400 ? res : this.statusError(res)
    },
    (res) => {
      this.settled()
      return res.readJson() as HttpResponse
    },
    (res) => {
      this.settled()
      return res.status < 400 ? res.readJson() as HttpResponse : this.statusError(res)
    }
  ]

  private readonly failed = (err: unknown): never => {
    this.counters.failures++
    this.settled()
    throw err
  }

  private settled (): void {
    const c = this.counters
    c.inFlight--
    if (c.inFlight === 0 && this.drained !== undefined) this.drained()
  }

  private async statusError (res: HttpResponse): Promise<never> {
    throw await statusError(res, this.options.passthroughStatus)
  }

  private closedError (ctx: CallContext): Error {
    const e = new ClientClosedError(`${this.name}: service client is ${this.state === 'created' ? 'not open yet' : 'closed'}`)
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
      const dispatcher = this.injected === undefined ? this.dispatcher : undefined
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
    for (const fn of this.closeHooks) fn()
  }

  stats (): ServiceStats {
    const c = this.counters
    const s: ServiceStats = {
      name: this.name,
      origins: this.options.origins,
      state: this.state,
      policies: this.policyNames,
      requests: c.requests,
      attempts: c.attempts,
      failures: c.failures,
      inFlight: c.inFlight
    }
    const pool = (this.dispatcher as { stats?: Record<string, unknown> } | undefined)?.stats
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

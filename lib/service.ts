import type { Dispatcher } from 'undici'
import type { ResolvedService } from './config/resolved'
import { createDispatcher } from './dispatcher'
import { ClientClosedError } from './errors'
import { buildChain } from './pipeline'
import { transport } from './pipeline/transport'
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
  private readonly closeHooks: Array<() => void> = []
  private state: State = 'created'
  private readonly injected: Dispatcher | undefined
  private drained: (() => void) | undefined = undefined

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

  /** Runs one call through the chain, counting it in flight until its response (not its body) is back. */
  async run (ctx: CallContext, handler: Next): Promise<HttpResponse> {
    if (this.state !== 'open') throw this.closedError(ctx)
    const c = this.counters
    c.requests++
    c.inFlight++
    try {
      return await handler(ctx)
    } catch (err) {
      c.failures++
      throw err
    } finally {
      c.inFlight--
      if (c.inFlight === 0 && this.drained !== undefined) this.drained()
    }
  }

  private closedError (ctx: CallContext): Error {
    const e = new ClientClosedError(`${this.name}: service client is ${this.state === 'created' ? 'not open yet' : 'closed'}`)
    e.service = this.name
    e.method = ctx.method
    return e
  }

  /**
   * Refuses new calls, lets calls in flight finish for up to `timeout` ms (undici's `close()` also waits for their
   * bodies), then destroys the dispatcher, aborting whatever is left. An injected dispatcher is left open.
   */
  async close (timeout: number): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return
    const wasOpen = this.state === 'open'
    this.state = 'closing'
    const dispatcher = this.dispatcher
    if (wasOpen && dispatcher !== undefined && this.injected === undefined) {
      let timer: NodeJS.Timeout | undefined
      const expired = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, timeout, true) })
      const closed = dispatcher.close().then(() => false, () => false)
      const timedOut = await Promise.race([closed, expired])
      clearTimeout(timer)
      if (timedOut) {
        this.log.warn({ inFlight: this.counters.inFlight, closeTimeout: timeout },
          'calls still in flight after closeTimeout: aborting them')
        await dispatcher.destroy(new ClientClosedError(`${this.name}: service client closed (closeTimeout ${timeout} ms passed)`))
          .catch(() => {})
      }
    } else if (wasOpen && this.counters.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeout)
        this.drained = () => { clearTimeout(timer); resolve() }
      })
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
    const pool = (this.dispatcher as { stats?: Record<string, number> } | undefined)?.stats
    if (pool !== undefined && typeof pool === 'object') {
      const { connected, free, pending, queued, running, size } = pool
      s.pool = { connected, free, pending, queued, running, size }
    }
    if (this.options.proxy !== undefined) s.proxy = this.options.proxy.display
    for (const [key, fn] of this.statsFns) s[key] = fn()
    return s
  }
}

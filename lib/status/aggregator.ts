/**
 * The status page's data source: a rolling window per service (`./rolling-window`) fed by the diagnostics channels.
 * It subscribes only while someone looks (a page or an SSE client connected, or the JSON read in the last minute) and
 * unsubscribes after, so an app whose page nobody opens pays nothing on its calls. While subscribed it ticks once a
 * second (and at once when a breaker changes state) to tell its watchers to send a snapshot.
 *
 * Hand-written because the figures are the library's own channels' (no metrics package reads them), and the page must
 * not need an OpenTelemetry SDK to show them.
 */
import { performance } from 'node:perf_hooks'
import {
  breakerState, cacheServed, callChannel, fallbackServed, hedgeFired, retryRefused, retryScheduled
} from '../diagnostics/channels'
import type { CacheMessage, CallMessage, RetryRefusedMessage } from '../diagnostics/messages'
import { Counter, RollingWindow } from './rolling-window'

/** What the aggregator needs of a registry: the names of its services (the messages carry the registry itself). */
export interface AggregatedRegistry {
  names: () => string[]
}

export interface AggregatorOptions {
  /** The clock, in ms (tests move it by hand). @default performance.now */
  now?: () => number
  /** How long after the last JSON read, with no watcher, it keeps counting (ms). @default 60000 */
  idleAfter?: number
  /** Milliseconds between ticks. @default 1000 */
  tickEvery?: number
}

type Watcher = () => void

export class StatusAggregator {
  private readonly registry: AggregatedRegistry
  /** The aggregator's clock (ms). */
  readonly now: () => number
  private readonly idleAfter: number
  private readonly tickEvery: number
  private readonly windows = new Map<string, RollingWindow>()
  private readonly watchers = new Set<Watcher>()
  private lastRead = -Infinity
  /** When it last subscribed (its clock's ms). */
  private startedAt = 0
  private timer: NodeJS.Timeout | undefined = undefined
  private soon: NodeJS.Immediate | undefined = undefined
  private closed = false
  private readonly onCall: (m: unknown) => void
  private readonly onRetry: (m: unknown) => void
  private readonly onRefused: (m: unknown) => void
  private readonly onHedge: (m: unknown) => void
  private readonly onFallback: (m: unknown) => void
  private readonly onCache: (m: unknown) => void
  private readonly onBreaker: (m: unknown) => void

  constructor (registry: AggregatedRegistry, options: AggregatorOptions = {}) {
    this.registry = registry
    this.now = options.now ?? (() => performance.now())
    this.idleAfter = options.idleAfter ?? 60_000
    this.tickEvery = options.tickEvery ?? 1000
    // Bound once: the same functions subscribe and unsubscribe, and no closure is made per call.
    // `asyncEnd` only: the call's outcome, its `error` already set when it failed.
    this.onCall = (m) => {
      const call = m as CallMessage
      this.ours(call)?.call(this.now(), call.duration ?? 0, call.error !== undefined)
    }
    this.onRetry = (m) => this.countOf(m, Counter.Retries)
    this.onRefused = (m) => { if ((m as RetryRefusedMessage).refusal === 'budget') this.countOf(m, Counter.BudgetRefused) }
    this.onHedge = (m) => this.countOf(m, Counter.Hedges)
    this.onFallback = (m) => this.countOf(m, Counter.Fallbacks)
    this.onCache = (m) => {
      const window = this.ours(m as CacheMessage)
      if (window === undefined) return
      const now = this.now()
      window.count(now, Counter.CacheLookups)
      if ((m as CacheMessage).cache !== 'miss') window.count(now, Counter.CacheHits)
    }
    this.onBreaker = (m) => { if (this.ours(m as { registry: object | undefined, service: string }) !== undefined) this.tickSoon() }
  }

  /** The window of a message's service when the message is about this registry's calls. */
  private ours (m: { registry: object | undefined, service: string }): RollingWindow | undefined {
    return m.registry === this.registry ? this.windows.get(m.service) : undefined
  }

  private countOf (m: unknown, counter: Counter): void {
    this.ours(m as { registry: object | undefined, service: string })?.count(this.now(), counter)
  }

  /** Whether it is subscribed to the channels now. */
  get subscribed (): boolean {
    return this.timer !== undefined
  }

  /** Seconds its windows cover as of `now`: since it subscribed, at most 60, at least 1. */
  windowSeconds (now: number): number {
    return Math.min(60, Math.max(1, (now - this.startedAt) / 1000))
  }

  /** The window of service `name`: made when the aggregator first subscribes, then kept (and cleared on each new subscription). */
  window (name: string): RollingWindow | undefined {
    return this.windows.get(name)
  }

  /** The JSON was read: counts (or goes on counting) for `idleAfter` from now. */
  read (): void {
    this.lastRead = this.now()
    this.start()
  }

  /**
   * A page or SSE client watches: `watcher` runs on every tick while it does. Returns the function that ends the
   * watch; the aggregator then stays subscribed for `idleAfter`, as after a read.
   */
  watch (watcher: Watcher): () => void {
    this.watchers.add(watcher)
    this.start()
    let done = false
    return () => {
      if (done) return
      done = true
      this.watchers.delete(watcher)
      this.lastRead = this.now()
    }
  }

  /** Unsubscribes for good and forgets the watchers (the app closes). */
  close (): void {
    this.closed = true
    this.watchers.clear()
    this.stop()
  }

  private start (): void {
    if (this.timer !== undefined || this.closed) return
    const now = this.now()
    this.startedAt = now
    for (const name of this.registry.names()) {
      let window = this.windows.get(name)
      if (window === undefined) {
        window = new RollingWindow()
        this.windows.set(name, window)
      }
      // What was counted before an unsubscribed gap would read as if nothing happened in it: start afresh.
      window.clear(now)
    }
    callChannel.asyncEnd.subscribe(this.onCall)
    retryScheduled.subscribe(this.onRetry)
    retryRefused.subscribe(this.onRefused)
    hedgeFired.subscribe(this.onHedge)
    fallbackServed.subscribe(this.onFallback)
    cacheServed.subscribe(this.onCache)
    breakerState.subscribe(this.onBreaker)
    this.timer = setInterval(() => this.tick(), this.tickEvery)
    this.timer.unref()
  }

  private stop (): void {
    if (this.timer === undefined) return
    clearInterval(this.timer)
    this.timer = undefined
    if (this.soon !== undefined) clearImmediate(this.soon)
    this.soon = undefined
    callChannel.asyncEnd.unsubscribe(this.onCall)
    retryScheduled.unsubscribe(this.onRetry)
    retryRefused.unsubscribe(this.onRefused)
    hedgeFired.unsubscribe(this.onHedge)
    fallbackServed.unsubscribe(this.onFallback)
    cacheServed.unsubscribe(this.onCache)
    breakerState.unsubscribe(this.onBreaker)
  }

  /** A breaker changed: the watchers hear of it now rather than at the next tick (several changes, one tick). */
  private tickSoon (): void {
    if (this.soon !== undefined || this.watchers.size === 0) return
    this.soon = setImmediate(() => {
      this.soon = undefined
      this.notify()
    })
  }

  /** Runs every `tickEvery` ms while subscribed; also what tests call to move on without waiting. */
  tick (): void {
    if (this.watchers.size === 0 && this.now() - this.lastRead >= this.idleAfter) {
      this.stop()
      return
    }
    this.notify()
  }

  private notify (): void {
    for (const watcher of this.watchers) {
      try {
        watcher()
      } catch {
        // A watcher is a connection being written to: one that fails must not stop the others or the timer.
      }
    }
  }
}

/**
 * Where a webhook receiver remembers which event ids it ran: a processing lease while the handler runs (so a second
 * delivery of the same id waits instead of running it too), then `done` for a TTL (so a redelivery is acknowledged
 * without running it). A handler that throws releases the lease: the sender's retry runs it again.
 *
 * The interface is what a shared store implements (a Redis one: `SET key processing NX PX lease`, then
 * `SET key done PX ttl`, `DEL key` on release, and `settled` polling or subscribing); the in-memory one below is the
 * default, per process, and forgets everything on restart.
 */

/** What `claim` found: `claimed` (run the handler, then `complete` or `release`), `done`, or `busy` (leased by another delivery). */
export type ClaimResult = 'claimed' | 'done' | 'busy'

export interface IdempotencyStore {
  /** Takes a processing lease of `lease` ms on `key` unless it is done or leased already. */
  claim: (key: string, lease: number) => Promise<ClaimResult>
  /** Marks `key` done for `ttl` ms (its lease ends). */
  complete: (key: string, ttl: number) => Promise<void>
  /** Ends `key`'s lease without marking it done (the handler failed). */
  release: (key: string) => Promise<void>
  /** Resolves once `key` is not leased any more (done, released or its lease expired), or after `timeout` ms. */
  settled: (key: string, timeout: number) => Promise<void>
  /** Stops the store's timers; the receiver calls it on close for a store it made itself. */
  close?: () => Promise<void> | void
}

/** Options of `MemoryIdempotencyStore`. */
export interface MemoryIdempotencyStoreOptions {
  /** The clock (Unix ms): tests pass a fake one. */
  now?: () => number
  /** How often expired entries are swept, in ms. */
  sweepEvery?: number
}

interface Entry {
  done: boolean
  expires: number
  waiters: Array<() => void> | undefined
}

/** The in-memory store: one Map, entries expiring lazily and by a sweep on an unref'd timer. */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries = new Map<string, Entry>()
  private readonly now: () => number
  private sweeper: NodeJS.Timeout | undefined

  constructor (options: MemoryIdempotencyStoreOptions = {}) {
    this.now = options.now ?? Date.now
    this.sweeper = setInterval(() => this.sweep(), options.sweepEvery ?? 60_000).unref()
  }

  /** Keys held now (leased or done), expired ones aside. */
  get size (): number {
    this.sweep()
    return this.entries.size
  }

  async claim (key: string, lease: number): Promise<ClaimResult> {
    const entry = this.live(key)
    if (entry !== undefined) return entry.done ? 'done' : 'busy'
    this.entries.set(key, { done: false, expires: this.now() + lease, waiters: undefined })
    return 'claimed'
  }

  async complete (key: string, ttl: number): Promise<void> {
    const entry = this.entries.get(key)
    this.entries.set(key, { done: true, expires: this.now() + ttl, waiters: undefined })
    wake(entry)
  }

  async release (key: string): Promise<void> {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.done) return
    this.entries.delete(key)
    wake(entry)
  }

  async settled (key: string, timeout: number): Promise<void> {
    const entry = this.live(key)
    if (entry === undefined || entry.done) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, Math.min(timeout, entry.expires - this.now())))
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      (entry.waiters ??= []).push(done)
    })
  }

  close (): void {
    clearInterval(this.sweeper)
    this.sweeper = undefined
  }

  /** The entry of `key` unless it expired (an expired lease wakes its waiters as it goes). */
  private live (key: string): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.expires > this.now()) return entry
    this.entries.delete(key)
    wake(entry)
    return undefined
  }

  private sweep (): void {
    const now = this.now()
    for (const [key, entry] of this.entries) {
      if (entry.expires <= now) {
        this.entries.delete(key)
        wake(entry)
      }
    }
  }
}

function wake (entry: Entry | undefined): void {
  const waiters = entry?.waiters
  if (waiters === undefined) return
  entry!.waiters = undefined // eslint-disable-line @typescript-eslint/no-non-null-assertion
  for (const fn of waiters) fn()
}

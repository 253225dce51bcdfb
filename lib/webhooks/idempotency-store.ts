/**
 * Where a webhook receiver remembers which event ids it ran: a processing lease while the handler runs (so a second
 * delivery of the same id waits instead of running it too), then `done` for a TTL (so a redelivery is acknowledged
 * without running it). A handler that throws releases the lease: the sender's retry runs it again.
 *
 * Every lease has an owner: `claim` returns a fresh token with `claimed`, and `complete` / `release` act only while
 * that token still holds the key. A handler that outlives its lease may see another delivery take the key over; its
 * late `release` (or `complete`) then leaves the new holder's lease alone instead of freeing the id for a third run.
 *
 * The interface is what a shared store implements (a Redis one: `SET key <token> NX PX lease`; `complete` and
 * `release` as a script that compares the value with the token first, then `SET key done PX ttl` or `DEL key`; and
 * `settled` polling or subscribing); the in-memory one below is the default, per process, and forgets everything on
 * restart. Each method may return a value or a promise of it.
 */
import { randomUUID } from 'node:crypto'

/** What `claim` found: `claimed` (run the handler, then `complete` or `release`), `done`, or `busy` (leased by another delivery). */
export type ClaimResult = 'claimed' | 'done' | 'busy'

/**
 * What `claim` returns: `{ result: 'claimed', token }` (this delivery holds the lease; `token` is its owner, passed
 * to `complete` or `release`), else `{ result: 'done' }` or `{ result: 'busy' }`.
 */
export type Claim = { result: 'claimed', token: string } | { result: Exclude<ClaimResult, 'claimed'> }

export interface IdempotencyStore {
  /** Takes a processing lease of `lease` ms on `key`, with a fresh owner token, unless it is done or leased already. */
  claim: (key: string, lease: number) => Claim | Promise<Claim>
  /**
   * Marks `key` done for `ttl` ms (its lease ends), unless another owner holds it now (`token` lost the lease to a
   * takeover) or it is done already: then it does nothing.
   */
  complete: (key: string, token: string, ttl: number) => void | Promise<void>
  /** Ends `key`'s lease without marking it done (the handler failed), only while `token` still holds it. */
  release: (key: string, token: string) => void | Promise<void>
  /** Resolves once `key` is not leased any more (done, released or its lease expired), or after `timeout` ms. */
  settled: (key: string, timeout: number) => void | Promise<void>
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
  /** The lease's owner (`undefined` once done). */
  token: string | undefined
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

  async claim (key: string, lease: number): Promise<Claim> {
    const entry = this.live(key)
    if (entry !== undefined) return { result: entry.done ? 'done' : 'busy' }
    const token = randomUUID()
    this.entries.set(key, { done: false, token, expires: this.now() + lease, waiters: undefined })
    return { result: 'claimed', token }
  }

  /**
   * Marks `key` done when `token` holds it, even past its lease if no one took it over (the handler did finish), or
   * when nothing holds it any more (its expired lease was swept).
   */
  async complete (key: string, token: string, ttl: number): Promise<void> {
    const entry = this.entries.get(key)
    if (entry !== undefined && (entry.done || entry.token !== token)) return
    this.entries.set(key, { done: true, token: undefined, expires: this.now() + ttl, waiters: undefined })
    wake(entry)
  }

  async release (key: string, token: string): Promise<void> {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.done || entry.token !== token) return
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

/**
 * The idempotency store in Redis, shared by every instance that uses the same Redis and key prefix: several instances
 * behind one webhook URL then run each event once. One key per event, `<prefix>webhook:<path>\n<id>` (or
 * `\nsha256:<hex>` of the body when the event has no id): its value is the lease's owner token while a handler runs
 * (`SET NX PX lease`), then `done` for the receiver's `ttl`. `complete` and `release` are Lua scripts that compare
 * the value with the token first, so a lost owner's late call leaves the new holder alone. `settled` polls.
 *
 * Every command is bounded by the connection's command timeout; a failed or slow one makes the method reject, so the
 * receiver falls back as for any failing store (the handler runs unguarded, logged at warn).
 */
import { randomUUID } from 'node:crypto'
import { RedisConnection, kBackgroundTimeout } from '../redis/connection'
import type { RedisClient } from '../config/options/redis'
import type { Claim, IdempotencyStore } from './idempotency-store'

/** Options of `RedisIdempotencyStore` over an ioredis client of your own (the store never closes it). */
export interface RedisIdempotencyStoreOptions {
  /** An ioredis client (or one with `get`, `set`, `eval`). */
  client: RedisClient
  /**
   * Prefix of every key.
   * @default 'fhs:'
   */
  keyPrefix?: string
  /**
   * Longest wait for one command, in ms: slower counts as a failure (the receiver runs the handler unguarded).
   * @default 50
   */
  timeout?: number
  /** Where Redis trouble is logged (at most one line every 10 s); silent when not given. */
  logger?: { warn: (obj: object, msg?: string) => void }
}

/** The value of a done key (a token is a UUID, never this). */
const kDone = 'done'
/** How often `settled` looks at a leased key, in ms. */
const kPollEvery = 50
// The memory store's semantics: complete when the token holds the key, or when nothing does (its lease expired and
// no one took it over: the handler did finish).
const kComplete = "local v = redis.call('get', KEYS[1]) if v == ARGV[1] or v == false then redis.call('set', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end return 0"
const kRelease = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

type Client = RedisClient & {
  get: (key: string) => Promise<string | null>
  eval: (script: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
}

const noLog = { warn () {} }

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly redis: RedisConnection
  /** Pending `settled` waits: `close()` ends them. */
  private readonly waits = new Set<() => void>()
  private closed = false

  /** Over an ioredis client of your own (options), or (internally) the registry's `redis` connection. */
  constructor (options: RedisIdempotencyStoreOptions | RedisConnection) {
    this.redis = options instanceof RedisConnection
      ? options
      : new RedisConnection({ url: undefined, client: options.client, keyPrefix: options.keyPrefix ?? 'fhs:', timeout: options.timeout ?? 50 }, options.logger ?? noLog)
  }

  private get client (): Client {
    return this.redis.client as Client
  }

  private key (key: string): string {
    return this.redis.key(`webhook:${key}`)
  }

  /** Runs a command bounded by `timeout`; rejects when it failed or took longer (`bounded` logged it). */
  private async command<T> (what: string, run: () => Promise<T>, timeout?: number): Promise<T> {
    let failed = true
    const value = await this.redis.bounded(what, async () => {
      const v = await run()
      failed = false
      return v
    }, timeout)
    if (failed) throw new Error(`redis ${what} failed or timed out`)
    return value as T
  }

  async claim (key: string, lease: number): Promise<Claim> {
    const k = this.key(key)
    const token = randomUUID()
    const set = await this.command('webhook claim', () => this.client.set(k, token, 'PX', Math.max(1, Math.ceil(lease)), 'NX'))
    if (set === 'OK') return { result: 'claimed', token }
    const value = await this.command('webhook claim', () => this.client.get(k))
    // Gone between the two commands (its lease ended): busy, so the receiver waits (at once) and claims again.
    return { result: value === kDone ? 'done' : 'busy' }
  }

  // Off the call path's tight budget: a lost `complete` costs a rerun, a lost `release` a stuck lease.
  async complete (key: string, token: string, ttl: number): Promise<void> {
    await this.command('webhook complete', () => this.client.eval(kComplete, 1, this.key(key), token, Math.max(1, Math.ceil(ttl))), kBackgroundTimeout)
  }

  async release (key: string, token: string): Promise<void> {
    await this.command('webhook release', () => this.client.eval(kRelease, 1, this.key(key), token), kBackgroundTimeout)
  }

  /** Polls every 50 ms until the key holds no token (done, gone), `timeout` passed, or the store closed. */
  async settled (key: string, timeout: number): Promise<void> {
    const k = this.key(key)
    const until = Date.now() + timeout
    while (!this.closed) {
      const value = await this.command('webhook settled', () => this.client.get(k))
      if (value === null || value === kDone) return
      const left = until - Date.now()
      if (left <= 0) return
      await this.pause(Math.min(kPollEvery, left))
    }
  }

  /** Ends pending `settled` waits; the connection stays open (its owner closes it). */
  close (): void {
    this.closed = true
    for (const wake of this.waits) wake()
  }

  private async pause (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.waits.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      timer.unref()
      this.waits.add(wake)
    })
  }
}

/**
 * Cache-aside for values an app computes or fetches itself (`fastify.httpServices.cache`): `getOrFetch` with a TTL,
 * tags and a forced refresh, `get`, `set`, `invalidate`, `invalidatePattern` and `invalidateTag`. In Redis (the
 * registry's `redis` option) when there is one, so every instance shares the values; in this process otherwise.
 *
 * A miss is fetched once per process at a time (single-flight) and, with Redis, once across instances: the first to
 * take a lock (`SET NX PX`) fetches, the others wait for its value (up to `kLockWait`, then fetch themselves). Written
 * by hand: the packages that do this (cache-manager, keyv) bring their own stores and connections, and none bounds
 * each Redis command or falls back to the fetcher when Redis is away, which is what this library promises.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidRequestError } from '../errors'
import type { RedisConnection } from '../redis/connection'
import { settleWithin } from '../settle-within'

/** Options of `getOrFetch` and `set`. */
export interface CacheAsideOptions {
  /**
   * How long the value is kept, in milliseconds; `0` keeps none (only a stale copy, with `staleIfError`).
   * @default 60000
   */
  ttl?: number
  /** `getOrFetch` only: fetch and store even when a value is cached. */
  forceRefresh?: boolean
  /** Tags `invalidateTag(tag)` removes the value by. */
  tags?: string[]
  /**
   * How long past `ttl` a stale copy is kept, in milliseconds: `getOrFetch` serves it when its fetcher throws, and
   * `get(key, { stale: true })` reads it (a breaker `fallback` can, while the upstream is down). `0` keeps none.
   * @default 0
   */
  staleIfError?: number
}

/** Options of `get`. */
export interface CacheAsideGetOptions {
  /** Also a value past its `ttl`, within its `staleIfError` window. */
  stale?: boolean
}

const kDefaultTtl = 60_000
/** How long a lock holder may fetch before the lock lapses. */
const kLockTtl = 10_000
/** How long an instance waits for another's fetch before it fetches itself. */
const kLockWait = 5_000
const kPoll = 25
/** Most values the memory store keeps: past it, expired values go, then the oldest. */
export const kMaxMemoryEntries = 10_000
const kReleaseLock = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

interface MemoryEntry { json: string, expires: number, staleUntil: number, tags: readonly string[] }

type Client = RedisConnection['client'] & Record<string, (...args: any[]) => Promise<any>>

/** A glob (`*`, `?`, `[…]`, as Redis's MATCH reads it) as a regular expression, for the memory store. */
function globToRegExp (pattern: string): RegExp {
  let out = ''
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]
    if (ch === '\\' && i + 1 < pattern.length) out += '\\' + pattern[++i]
    else if (ch === '*') out += '.*'
    else if (ch === '?') out += '.'
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1)
      if (end === -1) out += '\\['
      else {
        out += '[' + pattern.slice(i + 1, end).replace(/\\/g, '\\\\') + ']'
        i = end
      }
    } else out += ch.replace(/[.+^${}()|\\/]/g, '\\$&')
  }
  return new RegExp(`^${out}$`, 's')
}

/** A `ttl` or `staleIfError` that is not a number of ms is the caller's mistake: `InvalidRequestError`. */
function checkOptions (key: string, options: CacheAsideOptions): void {
  const { ttl, staleIfError } = options
  if (ttl !== undefined && !(typeof ttl === 'number' && Number.isFinite(ttl) && ttl >= 0)) {
    throw new InvalidRequestError(`cache ${JSON.stringify(key)}: ttl: expected a number of milliseconds, 0 or more`)
  }
  if (staleIfError !== undefined && !(typeof staleIfError === 'number' && Number.isFinite(staleIfError) && staleIfError >= 0)) {
    throw new InvalidRequestError(`cache ${JSON.stringify(key)}: staleIfError: expected a number of milliseconds, 0 or more`)
  }
}

export class CacheAside {
  private readonly redis: RedisConnection | undefined
  private readonly memory = new Map<string, MemoryEntry>()
  private readonly flights = new Map<string, Promise<unknown>>()

  constructor (redis: RedisConnection | undefined) {
    this.redis = redis
  }

  /** Where values live: `redis` when the registry has a Redis connection, else `memory`. */
  get store (): 'redis' | 'memory' {
    return this.redis === undefined ? 'memory' : 'redis'
  }

  /**
   * The cached value of `key` (a copy: values go through JSON), or `undefined`; with `stale: true`, also one past its
   * `ttl` within its `staleIfError` window.
   */
  async get<T = unknown> (key: string, options: CacheAsideGetOptions = {}): Promise<T | undefined> {
    const json = await this.read(key, options.stale === true)
    return json === undefined ? undefined : JSON.parse(json) as T
  }

  /** Stores `value` (as JSON) under `key` for `ttl` ms, with `tags`. */
  async set (key: string, value: unknown, options: Omit<CacheAsideOptions, 'forceRefresh'> = {}): Promise<void> {
    checkOptions(key, options)
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`cache.set(${JSON.stringify(key)}): the value cannot be stored as JSON`)
    await this.write(key, json, options)
  }

  /**
   * The cached value of `key`, or `fetcher()`'s, stored for `ttl` ms. Concurrent misses of one key share one fetch
   * in this process and, with Redis, across instances. A fetcher that throws stores nothing: the error is the answer,
   * unless a stale copy is there (`staleIfError`); a value JSON cannot hold (`undefined`) is returned and not stored.
   * The value is returned without waiting for its write.
   */
  getOrFetch<T> (key: string, fetcher: () => T | Promise<T>, options: CacheAsideOptions = {}): Promise<T> {
    const flying = this.flights.get(key)
    if (flying !== undefined) return flying as Promise<T>
    const flight = this.fetchOnce(key, fetcher, options).finally(() => this.flights.delete(key))
    this.flights.set(key, flight)
    return flight
  }

  /** Removes `key` (its stale copy too). */
  async invalidate (key: string): Promise<void> {
    this.memory.delete(key)
    const redis = this.redis
    if (redis !== undefined) await redis.bounded('cache-aside delete', () => redis.client.del(this.valueKey(key), this.staleKey(key)))
  }

  /**
   * Removes the keys matching a glob (`user:*`, as Redis's MATCH reads it); resolves with how many. With Redis it
   * walks the keys with SCAN (never KEYS, which blocks Redis), deleting each batch.
   */
  async invalidatePattern (pattern: string): Promise<number> {
    const redis = this.redis
    if (redis === undefined) {
      const re = globToRegExp(pattern)
      let n = 0
      for (const key of [...this.memory.keys()]) if (re.test(key) && this.memory.delete(key)) n++
      return n
    }
    const client = redis.client as Client
    let n = 0
    // The values, then the stale copies (not counted: they are copies of values, perhaps expired already).
    for (const prefix of [this.valueKey(''), this.staleKey('')]) {
      let cursor = '0'
      do {
        const page = await redis.bounded('cache-aside scan', () => client.scan(cursor, 'MATCH', prefix + pattern, 'COUNT', 200), 1000) as [string, string[]] | undefined
        if (page === undefined) break
        cursor = page[0]
        if (page[1].length === 0) continue
        const deleted = (await redis.bounded('cache-aside delete', () => client.del(...page[1]), 1000)) ?? 0
        if (prefix === this.valueKey('')) n += deleted
      } while (cursor !== '0')
    }
    return n
  }

  /** Removes every value stored with `tag` (their stale copies too); resolves with how many. */
  async invalidateTag (tag: string): Promise<number> {
    const redis = this.redis
    if (redis === undefined) {
      let n = 0
      for (const [key, entry] of [...this.memory]) if (entry.tags.includes(tag) && this.memory.delete(key)) n++
      return n
    }
    const client = redis.client as Client
    const tagKey = this.tagKey(tag)
    const members = await redis.bounded('cache-aside tag', () => client.smembers(tagKey) as Promise<string[]>, 1000)
    if (members === undefined) return 0
    const copies = members.filter((m) => m.startsWith(this.staleKey('')))
    const values = members.filter((m) => !m.startsWith(this.staleKey('')))
    const n = values.length === 0 ? 0 : (await redis.bounded('cache-aside delete', () => client.del(...values), 1000)) ?? 0
    await redis.bounded('cache-aside delete', () => client.del(tagKey, ...copies), 1000)
    return n
  }

  private async fetchOnce<T> (key: string, fetcher: () => T | Promise<T>, options: CacheAsideOptions): Promise<T> {
    checkOptions(key, options)
    if (options.forceRefresh !== true) {
      const json = await this.read(key, false)
      if (json !== undefined) return JSON.parse(json) as T
    }
    const redis = this.redis
    if (redis === undefined) {
      const [value, fetched] = await this.fetchOrStale(key, fetcher, options)
      if (fetched) await this.keep(key, value, options)
      return value
    }
    const client = redis.client as Client
    const lockKey = this.lockKey(key)
    const token = randomUUID()
    const taken = await redis.bounded('cache-aside lock', () => client.set(lockKey, token, 'PX', kLockTtl, 'NX'))
    const unlock = async (): Promise<void> => {
      if (taken === 'OK') await redis.bounded('cache-aside unlock', () => client.eval(kReleaseLock, 1, lockKey, token))
    }
    if (taken === null && options.forceRefresh !== true) {
      // Another instance is fetching: wait for its value, then fetch ourselves if it does not come.
      const until = Date.now() + kLockWait
      while (Date.now() < until) {
        await sleep(kPoll)
        const json = await this.read(key, false)
        if (json !== undefined) return JSON.parse(json) as T
      }
    }
    let value: T
    let fetched: boolean
    try {
      [value, fetched] = await this.fetchOrStale(key, fetcher, options)
    } catch (err) {
      await unlock()
      throw err
    }
    let json: string | undefined
    try {
      json = fetched ? JSON.stringify(value) : undefined // a value JSON cannot hold (a BigInt) is the caller's error
    } catch (err) {
      await unlock()
      throw err
    }
    if (json === undefined) {
      await unlock()
      return value
    }
    // The lock goes once the value is stored (the others poll for it meanwhile). The caller waits for that as for any
    // Redis command on its path, `redis.timeout` at most: a slower write goes on without it.
    const stored = this.write(key, json, options).catch(() => {}).finally(unlock)
    await settleWithin(stored, redis.timeout)
    return value
  }

  /**
   * `[fetcher()'s value, true]`; when it throws, `[a stale copy within staleIfError, false]` if there is one (served,
   * never stored again as fresh), else its error.
   */
  private async fetchOrStale<T> (key: string, fetcher: () => T | Promise<T>, options: CacheAsideOptions): Promise<[T, boolean]> {
    try {
      return [await fetcher(), true]
    } catch (err) {
      if ((options.staleIfError ?? 0) > 0) {
        const json = await this.read(key, true)
        if (json !== undefined) return [JSON.parse(json) as T, false]
      }
      throw err
    }
  }

  /** Stores a fetched value; one JSON cannot hold (`undefined`, a function) is returned to the caller, not stored. */
  private async keep (key: string, value: unknown, options: CacheAsideOptions): Promise<void> {
    const json = JSON.stringify(value)
    if (json !== undefined) await this.write(key, json, options)
  }

  /** The JSON stored for `key`: its value, or with `stale` its stale copy once the value expired. */
  private async read (key: string, stale: boolean): Promise<string | undefined> {
    const redis = this.redis
    if (redis === undefined) {
      const entry = this.memory.get(key)
      if (entry === undefined) return undefined
      const now = Date.now()
      if (entry.expires > now) return entry.json
      if (entry.staleUntil <= now) this.memory.delete(key)
      else if (stale) return entry.json
      return undefined
    }
    const buf = await redis.bounded('cache-aside read', () => redis.client.getBuffer(this.valueKey(key)))
    if (buf != null || !stale) return buf == null ? undefined : buf.toString('utf8')
    const copy = await redis.bounded('cache-aside read', () => redis.client.getBuffer(this.staleKey(key)))
    return copy == null ? undefined : copy.toString('utf8')
  }

  /** Writes `json` for `ttl`, a stale copy for `staleIfError` past it, and the tags; in Redis, all at once. */
  private async write (key: string, json: string, options: CacheAsideOptions): Promise<void> {
    checkOptions(key, options)
    const ttl = Math.ceil(options.ttl ?? kDefaultTtl)
    const stale = Math.ceil(options.staleIfError ?? 0)
    const tags = options.tags ?? []
    const redis = this.redis
    if (redis === undefined) {
      const now = Date.now()
      this.memory.delete(key) // re-inserted last: the Map's order is the order of writes
      // `ttl: 0` stores no value (a computed `max-age=0`), only a stale copy when one is asked for.
      if (ttl + stale === 0) return
      this.memory.set(key, { json, expires: now + ttl, staleUntil: now + ttl + stale, tags })
      if (this.memory.size > kMaxMemoryEntries) this.evict(now)
      return
    }
    const client = redis.client as Client
    const valueKey = this.valueKey(key)
    const staleKey = this.staleKey(key)
    const keys = [...(ttl > 0 ? [valueKey] : []), ...(stale > 0 ? [staleKey] : [])]
    const life = ttl + stale
    await Promise.all([
      redis.bounded('cache-aside write', () => ttl > 0 ? client.set(valueKey, json, 'PX', ttl) : client.del(valueKey), 1000),
      // A copy an earlier write kept would outlive this value: replaced, or removed.
      redis.bounded('cache-aside write', () => stale > 0 ? client.set(staleKey, json, 'PX', life) : client.del(staleKey), 1000),
      ...(keys.length === 0 ? [] : tags).map(async (tag) => {
        const tagKey = this.tagKey(tag)
        await redis.bounded('cache-aside tag', async () => {
          await client.sadd(tagKey, ...keys)
          // The tag's set lives as long as its longest value (GT: never shortened; Redis 7).
          await client.pexpire(tagKey, life, 'GT')
          if (await client.pttl(tagKey) < 0) await client.pexpire(tagKey, life)
        }, 1000)
      })
    ])
  }

  /** Drops expired values (and stale copies), then the oldest written, down to `kMaxMemoryEntries`. */
  private evict (now: number): void {
    for (const [key, entry] of this.memory) if (entry.staleUntil <= now) this.memory.delete(key)
    for (const key of this.memory.keys()) {
      if (this.memory.size <= kMaxMemoryEntries) break
      this.memory.delete(key)
    }
  }

  private staleKey (key: string): string {
    return (this.redis as RedisConnection).key(`aside:s:${key}`)
  }

  private valueKey (key: string): string {
    return (this.redis as RedisConnection).key(`aside:v:${key}`)
  }

  private tagKey (tag: string): string {
    return (this.redis as RedisConnection).key(`aside:t:${tag}`)
  }

  private lockKey (key: string): string {
    return (this.redis as RedisConnection).key(`aside:l:${key}`)
  }
}

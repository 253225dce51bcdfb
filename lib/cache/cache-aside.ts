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
import type { RedisConnection } from '../redis/connection'

/** Options of `getOrFetch` and `set`. */
export interface CacheAsideOptions {
  /**
   * How long the value is kept, in milliseconds.
   * @default 60000
   */
  ttl?: number
  /** `getOrFetch` only: fetch and store even when a value is cached. */
  forceRefresh?: boolean
  /** Tags `invalidateTag(tag)` removes the value by. */
  tags?: string[]
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

interface MemoryEntry { json: string, expires: number, tags: readonly string[] }

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

  /** The cached value of `key` (a copy: values go through JSON), or `undefined`. */
  async get<T = unknown> (key: string): Promise<T | undefined> {
    const json = await this.read(key)
    return json === undefined ? undefined : JSON.parse(json) as T
  }

  /** Stores `value` (as JSON) under `key` for `ttl` ms, with `tags`. */
  async set (key: string, value: unknown, options: Omit<CacheAsideOptions, 'forceRefresh'> = {}): Promise<void> {
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`cache.set(${JSON.stringify(key)}): the value cannot be stored as JSON`)
    await this.write(key, json, options.ttl ?? kDefaultTtl, options.tags ?? [])
  }

  /**
   * The cached value of `key`, or `fetcher()`'s, stored for `ttl` ms. Concurrent misses of one key share one fetch
   * in this process and, with Redis, across instances. A fetcher that throws stores nothing: the error is the answer;
   * a value JSON cannot hold (`undefined`) is returned and not stored.
   */
  getOrFetch<T> (key: string, fetcher: () => T | Promise<T>, options: CacheAsideOptions = {}): Promise<T> {
    const flying = this.flights.get(key)
    if (flying !== undefined) return flying as Promise<T>
    const flight = this.fetchOnce(key, fetcher, options).finally(() => this.flights.delete(key))
    this.flights.set(key, flight)
    return flight
  }

  /** Removes `key`. */
  async invalidate (key: string): Promise<void> {
    this.memory.delete(key)
    const redis = this.redis
    if (redis !== undefined) await redis.bounded('cache-aside delete', () => redis.client.del(this.valueKey(key)))
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
    const prefix = this.valueKey('')
    let cursor = '0'
    let n = 0
    do {
      const page = await redis.bounded('cache-aside scan', () => client.scan(cursor, 'MATCH', prefix + pattern, 'COUNT', 200), 1000) as [string, string[]] | undefined
      if (page === undefined) break
      cursor = page[0]
      if (page[1].length > 0) n += (await redis.bounded('cache-aside delete', () => client.del(...page[1]), 1000)) ?? 0
    } while (cursor !== '0')
    return n
  }

  /** Removes every value stored with `tag`; resolves with how many. */
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
    const n = members.length === 0 ? 0 : (await redis.bounded('cache-aside delete', () => client.del(...members), 1000)) ?? 0
    await redis.bounded('cache-aside delete', () => client.del(tagKey), 1000)
    return n
  }

  private async fetchOnce<T> (key: string, fetcher: () => T | Promise<T>, options: CacheAsideOptions): Promise<T> {
    if (options.forceRefresh !== true) {
      const json = await this.read(key)
      if (json !== undefined) return JSON.parse(json) as T
    }
    const redis = this.redis
    if (redis === undefined) {
      const value = await fetcher()
      await this.keep(key, value, options)
      return value
    }
    const client = redis.client as Client
    const lockKey = this.lockKey(key)
    const token = randomUUID()
    const taken = await redis.bounded('cache-aside lock', () => client.set(lockKey, token, 'PX', kLockTtl, 'NX'))
    if (taken === null && options.forceRefresh !== true) {
      // Another instance is fetching: wait for its value, then fetch ourselves if it does not come.
      const until = Date.now() + kLockWait
      while (Date.now() < until) {
        await sleep(kPoll)
        const json = await this.read(key)
        if (json !== undefined) return JSON.parse(json) as T
      }
    }
    try {
      const value = await fetcher()
      await this.keep(key, value, options)
      return value
    } finally {
      if (taken === 'OK') {
        await redis.bounded('cache-aside unlock', () => client.eval(kReleaseLock, 1, lockKey, token))
      }
    }
  }

  /** Stores a fetched value; one JSON cannot hold (`undefined`, a function) is returned to the caller, not stored. */
  private async keep (key: string, value: unknown, options: CacheAsideOptions): Promise<void> {
    const json = JSON.stringify(value)
    if (json !== undefined) await this.write(key, json, options.ttl ?? kDefaultTtl, options.tags ?? [])
  }

  private async read (key: string): Promise<string | undefined> {
    const redis = this.redis
    if (redis === undefined) {
      const entry = this.memory.get(key)
      if (entry === undefined) return undefined
      if (entry.expires <= Date.now()) {
        this.memory.delete(key)
        return undefined
      }
      return entry.json
    }
    const buf = await redis.bounded('cache-aside read', () => redis.client.getBuffer(this.valueKey(key)))
    return buf == null ? undefined : buf.toString('utf8')
  }

  private async write (key: string, json: string, ttl: number, tags: readonly string[]): Promise<void> {
    const redis = this.redis
    if (redis === undefined) {
      const now = Date.now()
      this.memory.delete(key) // re-inserted last: the Map's order is the order of writes
      this.memory.set(key, { json, expires: now + ttl, tags })
      if (this.memory.size > kMaxMemoryEntries) this.evict(now)
      return
    }
    const client = redis.client as Client
    const valueKey = this.valueKey(key)
    await redis.bounded('cache-aside write', () => client.set(valueKey, json, 'PX', ttl), 1000)
    for (const tag of tags) {
      const tagKey = this.tagKey(tag)
      await redis.bounded('cache-aside tag', async () => {
        await client.sadd(tagKey, valueKey)
        // The tag's set lives as long as its longest value (GT: never shortened; Redis 7).
        await client.pexpire(tagKey, ttl, 'GT')
        if (await client.pttl(tagKey) < 0) await client.pexpire(tagKey, ttl)
      }, 1000)
    }
  }

  /** Drops expired values, then the oldest written, down to `kMaxMemoryEntries`. */
  private evict (now: number): void {
    for (const [key, entry] of this.memory) if (entry.expires <= now) this.memory.delete(key)
    for (const key of this.memory.keys()) {
      if (this.memory.size <= kMaxMemoryEntries) break
      this.memory.delete(key)
    }
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

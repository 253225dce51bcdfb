/**
 * An undici `CacheStore` in Redis, shared by every instance of the app. Written here rather than taken from
 * `undici-cache-redis` (1.0.1, Platformatic): that package opens its own connection with iovalkey, so it cannot use
 * the app's ioredis client (`fastify.redis`) or the registry's one connection, and its commands have no call-path
 * timeout; this store is the few commands a cache needs, over `RedisConnection`, whose every command is bounded and
 * bypassed on failure (a read that fails is a miss, a write that fails stores nothing).
 *
 * One Redis key per service, method and URL (`<prefix>cache:<service>:<method>:<origin><path>`) holds that URL's
 * variants (Vary), at most `kMaxVariants`, with the key's TTL at the last variant's `deleteAt`. Its value is
 * `<4-byte length><JSON of the entries><bodies, one after the other>`. Two instances storing variants of one URL at
 * once may lose one of them: a later miss stores it again.
 */
import { Writable } from 'node:stream'
import { kBackgroundTimeout, type RedisConnection } from '../redis/connection'
import type { CacheKey, CacheStore, CacheValue, GetResult } from './undici-cache'

const kMaxVariants = 8

interface StoredEntry extends CacheValue {
  /** Body length in bytes. */
  size: number
}

function headerValueEquals (a: unknown, b: unknown): boolean {
  if (a == null || b == null) return a == null && b == null
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i])
  return a === b
}

/** Whether the request headers of `key` select `entry` (undici's memory store's rule). */
function varyMatches (key: CacheKey, entry: CacheValue): boolean {
  if (entry.vary == null) return true
  for (const name of Object.keys(entry.vary)) {
    if (!headerValueEquals(key.headers?.[name], entry.vary[name])) return false
  }
  return true
}

interface Decoded { entries: StoredEntry[], bodies: Buffer[] }

function decode (buf: Buffer): Decoded | undefined {
  try {
    const length = buf.readUInt32BE(0)
    const entries = JSON.parse(buf.subarray(4, 4 + length).toString('utf8')) as StoredEntry[]
    const bodies: Buffer[] = []
    let at = 4 + length
    for (const e of entries) {
      bodies.push(buf.subarray(at, at + e.size))
      at += e.size
    }
    return at === buf.length ? { entries, bodies } : undefined
  } catch {
    return undefined
  }
}

function encode ({ entries, bodies }: Decoded): Buffer {
  const meta = Buffer.from(JSON.stringify(entries), 'utf8')
  const head = Buffer.alloc(4)
  head.writeUInt32BE(meta.length, 0)
  return Buffer.concat([head, meta, ...bodies])
}

export class RedisCacheStore implements CacheStore {
  private readonly redis: RedisConnection
  private readonly namespace: string
  private readonly maxEntrySize: number

  constructor (redis: RedisConnection, service: string, maxEntrySize: number) {
    this.redis = redis
    this.namespace = `cache:${service}:`
    this.maxEntrySize = maxEntrySize
  }

  private redisKey (key: CacheKey): string {
    return this.redis.key(`${this.namespace}${key.method}:${key.origin}${key.path}`)
  }

  async get (key: CacheKey): Promise<GetResult | undefined> {
    const name = this.redisKey(key)
    const buf = await this.redis.bounded('cache read', () => this.redis.client.getBuffer(name))
    if (buf == null) return undefined
    const decoded = decode(buf)
    if (decoded === undefined) return undefined
    const now = Date.now()
    for (let i = 0; i < decoded.entries.length; i++) {
      const { size: _size, ...entry } = decoded.entries[i]
      if (entry.deleteAt > now && varyMatches(key, entry)) {
        return { ...entry, cacheControlDirectives: entry.cacheControlDirectives ?? {}, body: [decoded.bodies[i]] }
      }
    }
    return undefined
  }

  createWriteStream (key: CacheKey, value: CacheValue): Writable {
    const chunks: Buffer[] = []
    let size = 0
    const max = this.maxEntrySize
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const store = this
    return new Writable({
      write (chunk: Buffer, _encoding, callback) {
        size += chunk.length
        if (size > max) {
          this.destroy()
        } else {
          chunks.push(chunk)
        }
        callback()
      },
      final (callback) {
        // The caller does not wait for Redis: the entry is written (or not) on its own.
        void store.write(key, { ...value, size }, Buffer.concat(chunks, size))
        callback()
      }
    })
  }

  async delete (key: CacheKey): Promise<void> {
    const name = this.redisKey(key)
    await this.redis.bounded('cache delete', () => this.redis.client.del(name))
  }

  /** Adds `entry` to the variants stored for its URL (replacing the one the same request headers select). */
  private async write (key: CacheKey, entry: StoredEntry, body: Buffer): Promise<void> {
    const name = this.redisKey(key)
    const wait = Math.max(this.redis.timeout, kBackgroundTimeout)
    const current = await this.redis.bounded('cache read', () => this.redis.client.getBuffer(name), wait)
    const now = Date.now()
    const next: Decoded = { entries: [], bodies: [] }
    const old = current == null ? undefined : decode(current)
    if (old !== undefined) {
      for (let i = 0; i < old.entries.length; i++) {
        const e = old.entries[i]
        if (e.deleteAt <= now || varyMatches(key, e)) continue
        next.entries.push(e)
        next.bodies.push(old.bodies[i])
      }
    }
    next.entries.push(entry)
    next.bodies.push(body)
    while (next.entries.length > kMaxVariants) {
      next.entries.shift()
      next.bodies.shift()
    }
    const ttl = Math.ceil(Math.max(...next.entries.map((e) => e.deleteAt)) - now)
    if (ttl <= 0) return
    await this.redis.bounded('cache write', () => this.redis.client.set(name, encode(next), 'PX', ttl), wait)
  }
}

import { invalid, isPlainObject, isString, rule, variantsAs, type Checker } from '../checkers'
import { positiveMs } from '../values'
import { defineGroup, type Spec } from './group'

/**
 * The part of an ioredis client (`new Redis()`, `fastify.redis` from @fastify/redis) this library uses. Any client
 * with these methods and ioredis's semantics works.
 */
export interface RedisClient {
  getBuffer: (key: string) => Promise<Buffer | null>
  set: (...args: any[]) => Promise<unknown>
  del: (...keys: string[]) => Promise<number>
  /** ioredis's connection state: `wait`, `connecting`, `connect`, `ready`, `reconnecting`, `close`, `end`. */
  readonly status: string
  quit: () => Promise<unknown>
}

/**
 * The Redis connection shared state goes to (the `redis` store of `cache`). ioredis is an optional peer dependency,
 * loaded only when this option is given.
 */
export interface RedisOptions {
  /** A `redis://` or `rediss://` URL: the library opens the connection and closes it on close. Give `url` or `client`. */
  url?: string
  /** An ioredis client of yours (`fastify.redis`): used as it is and never closed by this library. */
  client?: RedisClient
  /**
   * Prefix of every key this library writes.
   * @default 'fhs:'
   */
  keyPrefix?: string
  /**
   * Longest wait for one Redis command on a call's path, in milliseconds; a slower or failed command is bypassed
   * (a cache read becomes a miss) and logged at warn, at most once every 10 s.
   * @default 50
   */
  timeout?: number
}

const redisUrl = rule('a redis:// or rediss:// URL', (v) => {
  if (!isString(v)) return false
  try {
    const url = new URL(v)
    return url.protocol === 'redis:' || url.protocol === 'rediss:'
  } catch {
    return false
  }
})

/** An ioredis client (or one that looks like it): an object with the methods `RedisClient` lists. */
export function isRedisClient (v: unknown): v is RedisClient {
  if (typeof v !== 'object' || v === null || isPlainObject(v)) return false
  const c = v as Record<string, unknown>
  return typeof c.getBuffer === 'function' && typeof c.set === 'function' && typeof c.del === 'function' &&
    typeof c.quit === 'function'
}

const redisClient = rule('an ioredis client (with getBuffer, set, del and quit)', isRedisClient)

export const redisOptions = defineGroup({
  url: { check: redisUrl, default: undefined },
  client: { check: redisClient, default: undefined },
  keyPrefix: { check: rule('a string', isString), default: 'fhs:' },
  timeout: { check: positiveMs, default: 50 }
} satisfies Spec<RedisOptions>, {
  refine: (value, key) => {
    if ((value.url === undefined) === (value.client === undefined)) throw invalid(key, 'takes url or client, exactly one of the two')
  }
})

/** The `redis` option: a URL, an ioredis client, or `RedisOptions`. */
export const redisOption: Checker = variantsAs('a redis:// URL, an ioredis client or an object of redis options',
  [isString, redisUrl],
  [isPlainObject, redisOptions.check],
  [isRedisClient, redisClient])

/** The `redis` option after resolution: `client` given, or `url` to connect to. */
export interface ResolvedRedis {
  url: string | undefined
  client: RedisClient | undefined
  keyPrefix: string
  timeout: number
}

export function resolveRedis (value: string | RedisClient | RedisOptions | undefined): ResolvedRedis | undefined {
  if (value === undefined) return undefined
  const d = redisOptions.defaults
  if (isString(value)) return { url: value, client: undefined, keyPrefix: d.keyPrefix, timeout: d.timeout }
  if (isRedisClient(value)) return { url: undefined, client: value, keyPrefix: d.keyPrefix, timeout: d.timeout }
  return { url: value.url, client: value.client, keyPrefix: value.keyPrefix ?? d.keyPrefix, timeout: value.timeout ?? d.timeout }
}

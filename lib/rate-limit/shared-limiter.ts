/**
 * A rate limit kept in Redis (`rateLimit.shared`): one limit for every instance of the app on the registry's Redis,
 * either algorithm, in a Lua script each (`./redis-scripts`): a token bucket as GCRA in `<prefix>rl:<service>`, the
 * exact sliding window as a sorted set in `<prefix>rlw:<service>`. Permits reserved within `maxWait` queue callers of
 * every instance in one line.
 *
 * Why by hand: `rate-limiter-flexible` (the package for this) was evaluated first. Its Redis limiter counts in fixed
 * windows (INCR + PEXPIRE), which lets twice the limit through around a window edge, has no token-bucket burst and
 * no reservation of a later permit (our `maxWait`: its `execEvenly` delays in the process that asked, after taking
 * the point, so instances do not queue behind each other), and times with each process's own clock. Its memory
 * "insurance" limiter is the fallback we need, but we already have those limiters (`./token-bucket`,
 * `./sliding-window`). What is left to write is two short Lua scripts, so no dependency.
 *
 * Redis unreachable, or slower than the connection's `timeout`: the same settings are enforced in this process (the
 * local limiter: each instance then allows the whole rate), or every call is refused (`failClosed`). Redis is asked
 * again at most once a second meanwhile; the outage is logged once at warn, the return at info.
 *
 * Only a connection that was ready and was lost is an outage. Before its first connection (a registry not opened yet:
 * ioredis's status `wait`; or `connecting`, `reconnecting` while Redis has never answered) calls are limited here the
 * same way, but nothing failed: no warn line, no outage in `stats()`, and no info line when Redis is there (a first
 * connection that fails is logged by the connection itself).
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { RedisConnection } from '../redis/connection'
import type { AdjustableRateLimiter, RateLimiterStats } from './limiter'
import { gcra, slidingWindow } from './redis-scripts'
import { SlidingWindow } from './sliding-window'
import { TokenBucket } from './token-bucket'

/** Where a shared limiter takes its permits now. */
export type SharedLimiterState = 'redis' | 'local'

/** Options of a shared limiter: a rate limit after resolution, and what to do while Redis is away. */
export interface SharedRateLimiterOptions {
  kind: 'token-bucket' | 'sliding-window'
  /** Token bucket: tokens per interval; sliding window: calls per window. */
  rate: number
  /** Token bucket: refill interval; sliding window: window length (ms). */
  interval: number
  /** Token bucket capacity (sliding window: ignored). */
  burst: number
  /** Refuse calls while Redis is away instead of limiting in this process. */
  failClosed: boolean
}

/** What the shared limiter logs with (the service's logger). */
interface Log {
  warn: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
}

/** How long the limiter stays local after Redis failed before it asks Redis again, in ms. */
export const kRecheckEvery = 1000

/** Clients seen ready once (all the limiters of a registry share one client), and those watched until they are. */
const kEverReady = new WeakSet<object>()
const kWatched = new WeakSet<object>()

interface Watchable {
  readonly status: string
  once?: (event: string, fn: () => void) => unknown
}

/**
 * Whether `client` has been ready at least once. Watched from the first limiter made on it: a listener on `ready`,
 * once, which removes itself when it fires (a client that is ready already needs none).
 */
function watchReady (client: Watchable): void {
  if (client.status === 'ready') kEverReady.add(client)
  if (kEverReady.has(client) || kWatched.has(client) || typeof client.once !== 'function') return
  kWatched.add(client)
  client.once('ready', () => { kEverReady.add(client) })
}

function everReady (client: Watchable): boolean {
  if (client.status === 'ready') kEverReady.add(client)
  return kEverReady.has(client)
}

export class SharedRateLimiter implements AdjustableRateLimiter {
  private readonly redis: RedisConnection
  private readonly key: string
  private readonly log: Log
  private readonly local: TokenBucket | SlidingWindow
  private readonly bucket: boolean
  private readonly failClosed: boolean
  /** Names this limiter's permits in a sliding window's set: with a count, unique. */
  private readonly member = randomUUID()
  private permits = 0
  private readonly rate: number
  private readonly interval: number
  private readonly burst: number
  private factor = 1
  private period: number
  private capacity: number
  private state: SharedLimiterState = 'redis'
  /** `performance.now()` time before which a limiter gone local does not ask Redis again. */
  private recheckAt = 0
  /** Permits free in Redis after the last answer. */
  private free: number
  private outages = 0
  /** An outage was logged (and counted) and Redis has not answered since: its return is logged. */
  private outage = false

  constructor (options: SharedRateLimiterOptions, redis: RedisConnection, service: string, log: Log) {
    this.redis = redis
    this.bucket = options.kind === 'token-bucket'
    // Apart: a deployment that changes algorithm must not find the other's type under its key.
    this.key = redis.key(this.bucket ? `rl:${service}` : `rlw:${service}`)
    this.log = log
    this.local = this.bucket ? new TokenBucket(options) : new SlidingWindow({ limit: options.rate, window: options.interval })
    this.failClosed = options.failClosed
    this.rate = options.rate
    this.interval = options.interval
    this.burst = options.burst
    this.period = options.interval / options.rate
    this.capacity = this.bucket ? Math.max(1, options.burst) : options.rate
    this.free = Math.floor(this.capacity)
    watchReady(redis.client as Watchable)
  }

  acquire (now: number, maxWait: number): number | Promise<number> {
    if (this.state === 'local' && now < this.recheckAt) return this.locally(now, maxWait)
    const client = this.redis.client
    if (client.status !== 'ready') {
      // Never connected yet (not opened, or the first connection under way): local, and no outage.
      if (everReady(client as Watchable)) this.down(now, `connection ${client.status}`)
      else this.state = 'local'
      return this.locally(now, maxWait)
    }
    // One call at a time asks a Redis that failed: the others stay local until it answers.
    if (this.state === 'local') this.recheckAt = now + kRecheckEvery
    return this.fromRedis(maxWait)
  }

  private async fromRedis (maxWait: number): Promise<number> {
    let failure = 'no answer in time'
    const answer = await this.redis.bounded('rate limit', () => this.take(maxWait)
      .catch((err: unknown) => {
        failure = err instanceof Error ? err.message : String(err)
        throw err
      }))
    const now = performance.now()
    if (answer === undefined) {
      this.down(now, failure)
      return this.locally(now, maxWait)
    }
    this.state = 'redis'
    if (this.outage) {
      this.outage = false
      this.log.info({ rateLimit: 'redis' }, 'shared rate limit: Redis is back, the limit is shared again')
    }
    this.free = answer[1]
    return answer[0]
  }

  /** One permit in Redis. The sliding window's length is `period × limit`: the adaptive factor scales it. */
  private async take (maxWait: number): Promise<[number, number]> {
    const client = this.redis.client
    return this.bucket
      ? await gcra(client, this.key, this.period, this.capacity, maxWait)
      : await slidingWindow(client, this.key, this.capacity, this.period * this.capacity, maxWait, `${this.member}:${++this.permits}`)
  }

  private down (now: number, why: string): void {
    this.recheckAt = now + kRecheckEvery
    this.state = 'local'
    if (this.outage) return
    this.outage = true
    this.outages++
    this.log.warn({ rateLimit: 'local', failClosed: this.failClosed, err: why },
      this.failClosed
        ? 'shared rate limit: Redis unavailable, calls are refused until it is back (failClosed)'
        : 'shared rate limit: Redis unavailable, limiting in this process until it is back')
  }

  /** The fallback: the local bucket, or a refusal (a wait past `maxWait`) when failing closed. */
  private locally (now: number, maxWait: number): number {
    if (this.failClosed) return Math.max(this.recheckAt - now, maxWait + 1)
    return this.local.acquire(now, maxWait)
  }

  onResponse (): void {}

  /**
   * The adaptive factor, this instance's own: its token-bucket permits cost `1 / factor` periods of the shared bucket
   * and its burst shrinks; in a sliding window it counts over a window `1 / factor` as long.
   */
  setFactor (factor: number, now: number): void {
    this.factor = factor
    this.period = this.interval / (this.rate * factor)
    if (this.bucket) this.capacity = Math.max(1, this.burst * factor)
    this.local.setFactor(factor, now)
  }

  /** Also deletes the limiter's key in Redis (for tests: every instance sharing it starts afresh). */
  reset (): void {
    this.local.reset()
    this.factor = 1
    this.period = this.interval / this.rate
    this.capacity = this.bucket ? Math.max(1, this.burst) : this.rate
    this.free = Math.floor(this.capacity)
    if (this.redis.client.status === 'ready') void this.redis.bounded('rate limit reset', () => this.redis.client.del(this.key))
  }

  stats (now: number): RateLimiterStats {
    const local = this.local.stats(now)
    return {
      ...local,
      // In Redis: as of this instance's last permit (other instances take them too).
      available: this.state === 'redis' ? this.free : local.available,
      rate: this.rate * this.factor,
      outages: this.outages
    }
  }

  shared (): SharedLimiterState {
    return this.state
  }
}

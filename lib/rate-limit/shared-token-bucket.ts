/**
 * A token bucket kept in Redis (`rateLimit.shared`): one limit for every instance of the app on the registry's Redis.
 *
 * Why by hand: `rate-limiter-flexible` (the package for this) was evaluated first. Its Redis limiter counts in fixed
 * windows (INCR + PEXPIRE), which lets twice the limit through around a window edge, has no token-bucket burst and
 * no reservation of a later permit (our `maxWait`: its `execEvenly` delays in the process that asked, after taking
 * the point, so instances do not queue behind each other), and times with each process's own clock. Its memory
 * "insurance" limiter is the fallback we need, but we already have that limiter (`./token-bucket`). What is left
 * to write is one Lua script, so no dependency.
 *
 * The script is GCRA (the generic cell rate algorithm), which is a token bucket stored as one number: the
 * theoretical arrival time (TAT) of the next permit, `<prefix>rl:<service>`, in milliseconds of Redis's own clock
 * (TIME), so instances whose clocks disagree still agree on the limit. A permit is free now when the TAT is at most
 * `burst - 1` periods ahead; otherwise it may be reserved for later (the TAT moves on, so the next caller, from any
 * instance, queues behind it), or refused with the wait. The key expires when the bucket would be full again.
 *
 * Redis unreachable, or slower than the connection's `timeout`: the same settings are enforced in this process (a
 * local `TokenBucket`: each instance then allows the whole rate), or every call is refused (`failClosed`). Redis
 * is asked again at most once a second meanwhile; the outage is logged once at warn, the return at info.
 */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { RedisConnection } from '../redis/connection'
import type { AdjustableRateLimiter, RateLimiterStats } from './limiter'
import { TokenBucket, type TokenBucketOptions } from './token-bucket'

/** Where a shared limiter takes its permits now. */
export type SharedLimiterState = 'redis' | 'local'

/** Options of a shared token bucket. */
export interface SharedTokenBucketOptions extends TokenBucketOptions {
  /** Refuse calls while Redis is away instead of limiting in this process. */
  failClosed: boolean
}

/** What the shared limiter logs with (the service's logger). */
interface Log {
  warn: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
}

/**
 * ARGV: period (ms per permit), capacity (burst), longest wait (ms). Returns the wait as a string (Redis turns a
 * Lua number into an integer) and the permits free now.
 */
export const kGcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local longest = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local after = tat + period
local wait = after - now - capacity * period
if wait < 0 then wait = 0 end
if wait == 0 or wait <= longest then
  redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.max(1, math.ceil(after - now)))
  tat = after
end
local free = math.floor((capacity * period - (tat - now)) / period + 1e-9)
if free < 0 then free = 0 end
return { string.format('%.3f', wait), free }
`
const kGcraSha = createHash('sha1').update(kGcraScript).digest('hex')

/** How long the limiter stays local after Redis failed before it asks Redis again, in ms. */
export const kRecheckEvery = 1000

type ScriptClient = {
  evalsha: (sha: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
  eval: (script: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
  del: (key: string) => Promise<unknown>
  readonly status: string
}

/** Runs the GCRA script for `key`: EVALSHA, and EVAL once when Redis does not have it cached (NOSCRIPT). */
export async function gcra (client: unknown, key: string, period: number, capacity: number, longest: number): Promise<[number, number]> {
  const c = client as ScriptClient
  // A wait past the script's string format is refused all the same.
  const args = [key, period, capacity, Math.min(longest, 1e12)]
  let reply: unknown
  try {
    reply = await c.evalsha(kGcraSha, 1, ...args)
  } catch (err) {
    if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err
    reply = await c.eval(kGcraScript, 1, ...args)
  }
  const [wait, free] = reply as [string, number]
  return [Number(wait), Number(free)]
}

export class SharedTokenBucket implements AdjustableRateLimiter {
  private readonly redis: RedisConnection
  private readonly key: string
  private readonly log: Log
  private readonly local: TokenBucket
  private readonly failClosed: boolean
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

  constructor (options: SharedTokenBucketOptions, redis: RedisConnection, service: string, log: Log) {
    this.redis = redis
    this.key = redis.key(`rl:${service}`)
    this.log = log
    this.local = new TokenBucket(options)
    this.failClosed = options.failClosed
    this.rate = options.rate
    this.interval = options.interval
    this.burst = options.burst
    this.period = options.interval / options.rate
    this.capacity = Math.max(1, options.burst)
    this.free = Math.floor(this.capacity)
  }

  acquire (now: number, maxWait: number): number | Promise<number> {
    if (this.state === 'local' && now < this.recheckAt) return this.locally(now, maxWait)
    if (this.redis.client.status !== 'ready') {
      this.down(now, `connection ${this.redis.client.status}`)
      return this.locally(now, maxWait)
    }
    // One call at a time asks a Redis that failed: the others stay local until it answers.
    if (this.state === 'local') this.recheckAt = now + kRecheckEvery
    return this.fromRedis(maxWait)
  }

  private async fromRedis (maxWait: number): Promise<number> {
    let failure = 'no answer in time'
    const answer = await this.redis.bounded('rate limit', () => gcra(this.redis.client, this.key, this.period, this.capacity, maxWait)
      .catch((err: unknown) => {
        failure = err instanceof Error ? err.message : String(err)
        throw err
      }))
    const now = performance.now()
    if (answer === undefined) {
      this.down(now, failure)
      return this.locally(now, maxWait)
    }
    if (this.state === 'local') {
      this.state = 'redis'
      this.log.info({ rateLimit: 'redis' }, 'shared rate limit: Redis is back, the limit is shared again')
    }
    this.free = answer[1]
    return answer[0]
  }

  private down (now: number, why: string): void {
    this.recheckAt = now + kRecheckEvery
    if (this.state === 'local') return
    this.state = 'local'
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

  /** The adaptive factor: this instance's permits cost `1 / factor` periods of the shared bucket, its burst shrinks. */
  setFactor (factor: number, now: number): void {
    this.factor = factor
    this.period = this.interval / (this.rate * factor)
    this.capacity = Math.max(1, this.burst * factor)
    this.local.setFactor(factor, now)
  }

  /** Also deletes the bucket in Redis (for tests: every instance sharing it starts full). */
  reset (): void {
    this.local.reset()
    this.factor = 1
    this.period = this.interval / this.rate
    this.capacity = Math.max(1, this.burst)
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

/**
 * The shared rate limits' Lua scripts (`./shared-limiter`), one per algorithm, each one atomic round trip that reads
 * Redis's clock (TIME), so instances whose clocks disagree still agree. Each takes the longest wait the caller
 * accepts and answers `[wait, free]`: the wait as a string (Redis turns a Lua number into an integer), `0` for a
 * permit now, up to the longest wait for one reserved then (later callers, from any instance, queue behind it),
 * more for a refusal that took nothing; `free` is the permits that may be taken now. Sent with EVALSHA, and EVAL when
 * Redis does not have the script (NOSCRIPT: a restart, SCRIPT FLUSH).
 */
import { createHash } from 'node:crypto'

/**
 * Effects replication, first in both scripts. A script that writes after reading TIME (not deterministic) must be
 * replicated by its effects, not as the script: the default from Redis 5 on; Redis 3.2 and 4 need
 * `redis.replicate_commands()` first, or the write fails ("Write commands not allowed after non deterministic
 * commands") and every shared limit would fall back to the local one. From Redis 5 the call is a no-op that returns
 * true (deprecated in 7.0, still there in 7.x); guarded (present, and in pcall) so a Redis that drops it runs the
 * script all the same. The README asks for Redis 5 or later.
 */
const kEffects = 'if redis.replicate_commands ~= nil then pcall(redis.replicate_commands) end'

/** What both scripts start with: effects replication, then `now` in ms (with microseconds) from Redis's clock. */
const kPrologue = `${kEffects}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000`

/**
 * GCRA (the generic cell rate algorithm): a token bucket stored as one number, the theoretical arrival time (TAT) of
 * the next permit in ms. A permit is free now when the TAT is at most `capacity - 1` periods ahead. The key expires
 * when the bucket would be full again. ARGV: period (ms per permit), capacity (burst), longest wait.
 */
export const kGcraScript = `${kPrologue}
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

/**
 * The exact sliding window of `./sliding-window` in a sorted set: one member per permit (`ARGV[4]`, unique), scored by
 * its time, reserved ones in the future. A permit may be taken once the `limit`-th latest is a window old, and never
 * before the latest (permits stay in order). Members a window old are dropped; the key expires a window after the
 * last permit. ARGV: limit, window (ms), longest wait, member.
 */
export const kSlidingWindowScript = `${kPrologue}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local longest = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.3f', now - window))
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(at, tonumber(oldest[2]) + window)
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then at = math.max(at, tonumber(last[2])) end
local wait = at - now
if wait == 0 or wait <= longest then
  redis.call('ZADD', KEYS[1], string.format('%.3f', at), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(at - now + window) + 1)
end
local free = limit - redis.call('ZCOUNT', KEYS[1], string.format('(%.3f', now - window), '+inf')
if free < 0 then free = 0 end
return { string.format('%.3f', wait), free }
`

const kSha = new Map([kGcraScript, kSlidingWindowScript].map((s) => [s, createHash('sha1').update(s).digest('hex')]))

interface ScriptClient {
  evalsha: (sha: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
  eval: (script: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
}

/** Runs `script` on `key`: EVALSHA, and EVAL once when Redis does not have it (NOSCRIPT). */
async function run (client: unknown, script: string, key: string, args: Array<string | number>): Promise<[number, number]> {
  const c = client as ScriptClient
  let reply: unknown
  try {
    reply = await c.evalsha(kSha.get(script) as string, 1, key, ...args)
  } catch (err) {
    if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err
    reply = await c.eval(script, 1, key, ...args)
  }
  const [wait, free] = reply as [string, number]
  return [Number(wait), Number(free)]
}

// A wait past what the scripts' number format holds is refused all the same.
const capped = (longest: number): number => Math.min(longest, 1e12)

/** One permit of the token bucket in `key` (GCRA): `[wait, free]`. */
export async function gcra (client: unknown, key: string, period: number, capacity: number, longest: number): Promise<[number, number]> {
  return await run(client, kGcraScript, key, [period, capacity, capped(longest)])
}

/** One permit of the sliding window in `key`, recorded as `member` (unique per permit): `[wait, free]`. */
export async function slidingWindow (
  client: unknown, key: string, limit: number, window: number, longest: number, member: string
): Promise<[number, number]> {
  return await run(client, kSlidingWindowScript, key, [limit, window, capped(longest), member])
}

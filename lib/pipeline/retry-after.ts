import type { IncomingHttpHeaders } from 'node:http'

// undici's RetryHandler parses Retry-After in a module-private function (and accepts any `new Date()` input, so
// `Retry-After: -5` reads as a date in year -5); it is not public API, hence this small parser.

const kSeconds = /^\s*\d+(?:\.\d+)?\s*$/
// An HTTP-date (RFC 9110 5.6.7) always names a day or month; a bare number or sign never is one.
const kHasLetter = /[a-z]/i
// Below this an X-RateLimit-Reset is a number of seconds to wait; above it, a Unix time (seconds, or milliseconds
// above 1e12). 1e9 seconds is 31 years: no server asks for that wait, and no reset lies before 2001.
const kEpochSeconds = 1e9
const kEpochMillis = 1e12

function single (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

// A date or reset time that is not in the future says nothing: with clock skew between the upstream and this host
// (or a stale cached answer) it would otherwise mean a wait of 0 ms, and so retries back to back at the moment the
// upstream is struggling. The normal backoff applies then. A delta of 0 (`Retry-After: 0`) is an explicit "now".

/**
 * Milliseconds to wait according to a `Retry-After` value: delta-seconds or an HTTP-date. `undefined` when the
 * value is absent or unreadable, or a date that is not in the future (clock skew: the caller's backoff applies).
 */
export function parseRetryAfter (value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = single(value)
  if (text === undefined || text === '') return undefined
  if (kSeconds.test(text)) return Number(text) * 1000
  if (!kHasLetter.test(text)) return undefined
  const at = Date.parse(text)
  return Number.isNaN(at) || at <= now ? undefined : at - now
}

/**
 * Milliseconds to wait according to an `X-RateLimit-Reset` value: a Unix time in seconds (GitHub and most APIs),
 * in milliseconds, or a number of seconds to wait (the IETF draft's delta form). `undefined` when unreadable, or a
 * Unix time that is not in the future (clock skew: the caller's backoff applies).
 */
export function parseRateLimitReset (value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = single(value)
  if (text === undefined || !kSeconds.test(text)) return undefined
  const n = Number(text)
  const at = n >= kEpochMillis ? n : n >= kEpochSeconds ? n * 1000 : undefined
  if (at === undefined) return n * 1000
  return at > now ? at - now : undefined
}

/**
 * The wait a response asks for, in milliseconds: its `Retry-After`, else its `X-RateLimit-Reset` when the response
 * says the limit is spent (status 429, or `X-RateLimit-Remaining: 0`): a reset time sent on every response means
 * nothing for a 503. `undefined` when the response asks for nothing.
 */
export function requestedDelay (status: number, headers: IncomingHttpHeaders, now: number = Date.now()): number | undefined {
  const retryAfter = parseRetryAfter(headers['retry-after'], now)
  if (retryAfter !== undefined) return retryAfter
  const reset = headers['x-ratelimit-reset']
  if (reset === undefined) return undefined
  if (status !== 429 && single(headers['x-ratelimit-remaining'])?.trim() !== '0') return undefined
  return parseRateLimitReset(reset, now)
}

/**
 * What a signature scheme is to the rest of lib/webhooks: how a secret becomes a key, how a body is signed, and how
 * a signed body is checked. One file per scheme (standard.ts, stripe.ts, hmac.ts) implements it; this file holds what
 * they share: the failure they throw and the constant-time comparison.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { WebhookVerificationError, type WebhookFailure } from '../errors'

/** The schemes `signWebhook`, `verifyWebhook`, the receiver and the sender know. */
export type WebhookScheme = 'standard' | 'stripe' | 'hmac'

/** Reads one request header by its lower-case name; `undefined` when absent. */
export type HeaderReader = (name: string) => string | undefined

/** What a scheme's `sign` is given: the body, the keys (one signature each), the event id and time. */
export interface SignInput {
  body: Buffer
  keys: Buffer[]
  id: string
  /** Unix seconds. */
  timestamp: number
  /** The header of the `hmac` scheme (lower-case). */
  header: string
  /** Prefix of the `hmac` scheme's value (`sha256=`, or `''`). */
  prefix: string
}

/** What a scheme's `verify` is given. */
export interface VerifyInput {
  body: Buffer
  read: HeaderReader
  keys: Buffer[]
  /** Unix seconds. */
  now: number
  /** Seconds either side of `now` a timestamp may be. */
  tolerance: number
  header: string
}

/** What verification learnt of the event: its id and time, when the scheme carries them. */
export interface Verified {
  id?: string
  timestamp?: number
}

export interface Scheme {
  /** The HMAC key of `secret`: throws (a message of its own, without the secret) when it cannot be one. */
  keyOf: (secret: string) => Buffer
  sign: (input: SignInput) => Record<string, string>
  /** Returns what it learnt, or throws `WebhookVerificationError`. */
  verify: (input: VerifyInput) => Verified
}

const kBadRequest: ReadonlySet<WebhookFailure> = new Set(['missing-id', 'missing-timestamp', 'missing-signature',
  'malformed-timestamp', 'malformed-signature', 'invalid-json'])

/** The error of a failed check: 400 for what is missing or malformed, 401 for what does not match. */
export function rejected (reason: WebhookFailure, message: string): WebhookVerificationError {
  const err = new WebhookVerificationError(`webhook verification failed: ${message}`)
  err.reason = reason
  err.statusCode = kBadRequest.has(reason) ? 400 : 401
  return err
}

export function hmac (key: Buffer, ...parts: Array<string | Buffer>): Buffer {
  const h = createHmac('sha256', key)
  for (const part of parts) h.update(part)
  return h.digest()
}

/**
 * Whether `given` is `expected`, in constant time. A length mismatch fails at once: the length of an HMAC-SHA256 is
 * public, so nothing of the expected value leaks by it.
 */
export function sameBytes (given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected)
}

const kTimestamp = /^\d{1,15}$/

/**
 * The timestamp header as Unix seconds, checked against `now` and `tolerance` in both directions (a timestamp far in
 * the future is as suspect as an old one: a captured request replayed later would otherwise pass).
 */
export function checkTimestamp (raw: string | undefined, now: number, tolerance: number): number {
  if (raw === undefined || raw === '') throw rejected('missing-timestamp', 'the timestamp is missing')
  if (!kTimestamp.test(raw)) throw rejected('malformed-timestamp', 'the timestamp is not a number of Unix seconds')
  const timestamp = Number(raw)
  if (timestamp < now - tolerance) throw rejected('timestamp-too-old', `the timestamp is older than the tolerance (${tolerance} s)`)
  if (timestamp > now + tolerance) throw rejected('timestamp-in-future', `the timestamp is further in the future than the tolerance (${tolerance} s)`)
  return timestamp
}

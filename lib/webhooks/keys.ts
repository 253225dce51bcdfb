/**
 * The options every webhook entry point shares (`signWebhook`, `verifyWebhook`, the receiver, a service's `webhook`):
 * the scheme, its secrets turned into keys once, and the `hmac` scheme's header. Checked where they are given, with
 * messages that name the key and never show a secret.
 */
import { invalid, isString } from '../config/checkers'
import { hmacScheme } from './hmac'
import type { Scheme, WebhookScheme } from './scheme'
import { standardScheme } from './standard'
import { stripeScheme } from './stripe'

export const kSchemes: Readonly<Record<WebhookScheme, Scheme>> = Object.freeze({
  standard: standardScheme,
  stripe: stripeScheme,
  hmac: hmacScheme
})

/** The header the `hmac` scheme uses unless told otherwise (seed 004's). */
export const kHmacHeader = 'x-webhook-signature'

/** Five minutes, the tolerance of both Standard Webhooks and Stripe. */
export const kDefaultTolerance = 300_000

const kToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** The scheme named `value` (`'standard'` when `undefined`). */
export function schemeOf (value: unknown, key: string): WebhookScheme {
  if (value === undefined) return 'standard'
  if (value === 'standard' || value === 'stripe' || value === 'hmac') return value
  throw invalid(key, `expected one of "standard", "stripe", "hmac", got ${JSON.stringify(String(value)).slice(0, 40)}`)
}

/**
 * The HMAC keys of `secrets` under `scheme`: an empty secret, a bare `whsec_` and (for `standard`) a `whsec_` secret
 * that is not base64 or decodes to fewer than 16 bytes are refused, naming `key` (and the index of a list) but never
 * the value.
 */
export function keysOf (scheme: WebhookScheme, secrets: unknown, key: string): Buffer[] {
  const list = Array.isArray(secrets) ? secrets : [secrets]
  if (list.length === 0) throw invalid(key, 'expected at least one secret, got an empty list')
  return list.map((secret, i) => {
    const at = Array.isArray(secrets) ? `${key}[${i}]` : key
    if (!isString(secret)) throw invalid(at, `expected a secret (a non-empty string), got ${secret === null ? 'null' : typeof secret}`)
    if (secret === '' || secret === 'whsec_') throw invalid(at, `expected a secret, got ${secret === '' ? 'an empty string' : 'a bare "whsec_" prefix'}`)
    try {
      return kSchemes[scheme].keyOf(secret)
    } catch (err) {
      throw invalid(at, `expected a secret for the ${scheme} scheme: ${(err as Error).message}`)
    }
  })
}

/** The lower-case header of the `hmac` scheme. */
export function hmacHeaderOf (value: unknown, key: string): string {
  if (value === undefined) return kHmacHeader
  if (!isString(value) || !kToken.test(value)) throw invalid(key, 'expected a header name (an HTTP token)')
  return value.toLowerCase()
}

/** A tolerance in milliseconds (`kDefaultTolerance` when `undefined`). */
export function toleranceOf (value: unknown, key: string): number {
  if (value === undefined) return kDefaultTolerance
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw invalid(key, `expected a number of milliseconds >= 0, got ${String(value)}`)
  return value
}

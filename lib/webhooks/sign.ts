import { randomBytes } from 'node:crypto'
import { invalid, isPlainObject, isString } from '../config/checkers'
import { hmacHeaderOf, kSchemes, keysOf, schemeOf } from './keys'
import type { WebhookScheme } from './scheme'

/** Options of `signWebhook`. */
export interface SignWebhookOptions {
  /**
   * The secret, or several during a rotation (one signature each; the `hmac` scheme signs with the first). For
   * `standard`, a `whsec_<base64>` string; for `stripe` and `hmac`, used as it is.
   */
  secret: string | readonly string[]
  /**
   * The event id (`webhook-id`): the same on every attempt of one event. No `.`, CR, LF or NUL.
   * @default 'msg_' and 22 random base64url characters
   */
  id?: string
  /**
   * Unix time in seconds.
   * @default now
   */
  timestamp?: number
  /**
   * `'standard'` (Standard Webhooks), `'stripe'` or `'hmac'` (a hex HMAC of the body in one header).
   * @default 'standard'
   */
  scheme?: WebhookScheme
  /**
   * The header of the `hmac` scheme.
   * @default 'x-webhook-signature'
   */
  header?: string
  /**
   * A prefix for the `hmac` scheme's value: `'sha256='` for GitHub's style.
   * @default ''
   */
  prefix?: string
}

const kId = /^[^.\r\n\0]{1,256}$/

/** A fresh event id: `msg_` and 128 random bits. */
export function newWebhookId (): string {
  return `msg_${randomBytes(16).toString('base64url')}`
}

/** Checks an event id given by a caller (`key` names it in the message). */
export function checkWebhookId (id: unknown, key: string): string {
  if (!isString(id) || !kId.test(id)) throw invalid(key, 'expected a webhook id (1 to 256 characters, no ".", CR, LF or NUL)')
  return id
}

/**
 * The headers that sign `body` under `options.scheme`, to send with it unchanged (the body must go out byte for byte
 * as signed). For `standard`: `webhook-id`, `webhook-timestamp`, `webhook-signature`; for `stripe`:
 * `stripe-signature`; for `hmac`: the configured header. Throws `InvalidOptionsError` for a bad option.
 */
export function signWebhook (body: string | Buffer, options: SignWebhookOptions): Record<string, string> {
  if (!isPlainObject(options)) throw invalid('options', 'expected an object with a secret')
  if (!isString(body) && !Buffer.isBuffer(body)) throw invalid('body', 'expected a string or a Buffer')
  const scheme = schemeOf(options.scheme, 'scheme')
  const keys = keysOf(scheme, options.secret, 'secret')
  const id = options.id === undefined ? newWebhookId() : checkWebhookId(options.id, 'id')
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000)
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw invalid('timestamp', 'expected Unix time in whole seconds')
  const prefix = options.prefix ?? ''
  if (!isString(prefix) || /[\r\n\0]/.test(prefix)) throw invalid('prefix', 'expected a string without CR, LF or NUL')
  return kSchemes[scheme].sign({
    body: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'),
    keys,
    id,
    timestamp,
    header: hmacHeaderOf(options.header, 'header'),
    prefix
  })
}

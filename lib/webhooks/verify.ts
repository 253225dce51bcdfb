import { invalid, isPlainObject, isString } from '../config/checkers'
import { hmacHeaderOf, kSchemes, keysOf, schemeOf, toleranceOf } from './keys'
import { rejected, type HeaderReader, type Verified, type WebhookScheme } from './scheme'

/** Options of `verifyWebhook`. Give `secret` or `secrets`. */
export interface VerifyWebhookOptions {
  /** The secret. */
  secret?: string
  /** Several secrets (a rotation): a signature made with any of them passes. */
  secrets?: readonly string[]
  /**
   * `'standard'` (Standard Webhooks), `'stripe'` or `'hmac'`.
   * @default 'standard'
   */
  scheme?: WebhookScheme
  /**
   * How far, in milliseconds, the timestamp may be from now, either way (`standard` and `stripe`).
   * @default 300000 (5 minutes)
   */
  tolerance?: number
  /**
   * The header of the `hmac` scheme.
   * @default 'x-webhook-signature'
   */
  header?: string
  /**
   * The current time (Unix ms) to check timestamps against: for tests and replays of recorded requests.
   * @default Date.now()
   */
  now?: number
}

/** Request headers as Node (`IncomingHttpHeaders`), Fastify or the fetch API (`Headers`) give them. */
export type WebhookHeaders = Record<string, string | string[] | undefined> | { get: (name: string) => string | null }

/** What a verifier returns: the event id and time the scheme carried, and the parsed body. */
export interface VerifiedWebhook extends Verified {
  payload: unknown
}

/** A verifier with its options checked and keys derived once: the receiver makes one at registration. */
export type Verifier = (body: Buffer, headers: WebhookHeaders, now?: number) => VerifiedWebhook

/** @internal The verifier of `options`; `key` prefixes the names of bad options in messages. */
export function createVerifier (options: VerifyWebhookOptions, key = ''): Verifier {
  const at = (name: string): string => key === '' ? name : `${key}.${name}`
  if (!isPlainObject(options)) throw invalid(key === '' ? 'options' : key, 'expected an object with secret or secrets')
  if ((options.secret === undefined) === (options.secrets === undefined)) throw invalid(at('secret'), 'give either secret or secrets')
  const scheme = schemeOf(options.scheme, at('scheme'))
  const keys = options.secrets !== undefined
    ? keysOf(scheme, Array.isArray(options.secrets) ? options.secrets : [undefined], at('secrets'))
    : keysOf(scheme, options.secret, at('secret'))
  const tolerance = toleranceOf(options.tolerance, at('tolerance')) / 1000
  const header = hmacHeaderOf(options.header, at('header'))
  const fixedNow = options.now
  if (fixedNow !== undefined && (typeof fixedNow !== 'number' || !Number.isFinite(fixedNow))) throw invalid(at('now'), 'expected Unix time in ms')
  const { verify } = kSchemes[scheme]
  return (body, headers, now = fixedNow ?? Date.now()) => {
    const verified = verify({ body, read: readerOf(headers), keys, now: Math.floor(now / 1000), tolerance, header })
    return { ...verified, payload: parse(body) }
  }
}

/**
 * Checks that `body` (the exact bytes received) was signed by a holder of the secret, within the tolerance, and
 * returns it parsed as JSON (`undefined` when empty). Throws `WebhookVerificationError` (400 or 401, with the failed
 * check as its `reason`) or, for bad options, `InvalidOptionsError`.
 */
export function verifyWebhook (body: string | Buffer, headers: WebhookHeaders, options: VerifyWebhookOptions): unknown {
  const verifier = createVerifier(options)
  if (!isString(body) && !Buffer.isBuffer(body)) throw invalid('body', 'expected a string or a Buffer (the raw body)')
  return verifier(Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), headers).payload
}

function parse (body: Buffer): unknown {
  if (body.length === 0) return undefined
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw rejected('invalid-json', 'the body is not JSON')
  }
}

function readerOf (headers: WebhookHeaders): HeaderReader {
  if (typeof headers !== 'object' || headers === null) return () => undefined
  if (typeof headers.get === 'function') {
    const h = headers as { get: (name: string) => string | null }
    return (name) => h.get(name) ?? undefined
  }
  const record = headers as Record<string, string | string[] | undefined>
  return (name) => {
    let value = record[name]
    if (value === undefined) {
      // Node and Fastify lower-case header names; a plain object written by hand may not.
      for (const k of Object.keys(record)) if (k.toLowerCase() === name) { value = record[k]; break }
    }
    return Array.isArray(value) ? value.join(' ') : value
  }
}

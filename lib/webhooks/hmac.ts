/**
 * The plain scheme many senders use (seed 004's `X-Webhook-Signature`, GitHub's `X-Hub-Signature-256`): the hex
 * HMAC-SHA256 of the body, keyed with the secret as it is, in one header, optionally prefixed `sha256=`. It carries no
 * timestamp, so nothing stops a captured request being replayed: the receiver's idempotency store is the only guard.
 */
import { hmac, rejected, sameBytes, type Scheme } from './scheme'

const kHex = /^[0-9a-f]{64}$/i
const kAlgorithm = 'sha256='

export const hmacScheme: Scheme = {
  keyOf (secret) {
    return Buffer.from(secret, 'utf8')
  },

  sign ({ body, keys, header, prefix }) {
    return { [header]: prefix + hmac(keys[0], body).toString('hex') }
  },

  verify ({ body, read, keys, header }) {
    const raw = read(header)
    if (raw === undefined || raw === '') throw rejected('missing-signature', `the ${header} header is missing`)
    const hex = raw.startsWith(kAlgorithm) ? raw.slice(kAlgorithm.length) : raw
    if (!kHex.test(hex)) throw rejected('malformed-signature', `the ${header} header is not a hex HMAC-SHA256`)
    const given = Buffer.from(hex, 'hex')
    for (const key of keys) if (sameBytes(given, hmac(key, body))) return {}
    throw rejected('signature-mismatch', 'the signature does not match the body and a secret')
  }
}

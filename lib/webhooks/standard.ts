/**
 * Standard Webhooks (https://www.standardwebhooks.com, symmetric `v1`): headers `webhook-id`, `webhook-timestamp` and
 * `webhook-signature` (space-separated `v1,<base64>` entries, one per secret during a rotation), HMAC-SHA256 over
 * `${id}.${timestamp}.${body}` keyed with the base64-decoded part of a `whsec_` secret.
 */
import { checkTimestamp, hmac, rejected, sameBytes, type Scheme } from './scheme'

const kPrefix = 'whsec_'
const kBase64 = /^[A-Za-z0-9+/]+={0,2}$/
/**
 * The shortest key taken, in decoded bytes: the specification's secrets are 24 to 64 bytes; below 16 (128 bits) a key
 * is guessable, so a typo such as `whsec_YQ==` (one byte) is refused rather than signed with.
 */
export const kMinStandardKeyBytes = 16

export const standardScheme: Scheme = {
  keyOf (secret) {
    // The prefix is optional, as in the specification's own libraries.
    const encoded = secret.startsWith(kPrefix) ? secret.slice(kPrefix.length) : secret
    if (encoded === '') throw new Error('a whsec_ secret needs its base64 part')
    if (!kBase64.test(encoded) || encoded.length % 4 === 1) throw new Error('a whsec_ secret is base64 after its prefix')
    const key = Buffer.from(encoded, 'base64')
    if (key.length < kMinStandardKeyBytes) throw new Error(`a whsec_ secret must decode to at least ${kMinStandardKeyBytes} bytes (the specification's are 24 to 64)`)
    return key
  },

  sign ({ body, keys, id, timestamp }) {
    const signatures = keys.map((key) => `v1,${hmac(key, `${id}.${timestamp}.`, body).toString('base64')}`)
    return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signatures.join(' ') }
  },

  verify ({ body, read, keys, now, tolerance }) {
    const id = read('webhook-id')
    if (id === undefined || id === '') throw rejected('missing-id', 'the webhook-id header is missing')
    const header = read('webhook-signature')
    if (header === undefined || header === '') throw rejected('missing-signature', 'the webhook-signature header is missing')
    const timestamp = checkTimestamp(read('webhook-timestamp'), now, tolerance)
    const given: Buffer[] = []
    let wellFormed = false
    for (const entry of header.split(' ')) {
      const comma = entry.indexOf(',')
      if (comma <= 0 || comma === entry.length - 1) continue
      wellFormed = true
      // Other versions (`v1a`: asymmetric) are not ours to check; an entry that is not base64 decodes short and fails.
      if (entry.slice(0, comma) === 'v1') given.push(Buffer.from(entry.slice(comma + 1), 'base64'))
    }
    if (!wellFormed) throw rejected('malformed-signature', 'the webhook-signature header holds no "v1,<base64>" entry')
    for (const key of keys) {
      const expected = hmac(key, `${id}.${timestamp}.`, body)
      for (const signature of given) if (sameBytes(signature, expected)) return { id, timestamp }
    }
    throw rejected('signature-mismatch', 'no signature matches the body and a secret')
  }
}

/**
 * Stripe's scheme: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over `${t}.${body}` keyed
 * with the whole `whsec_…` string as it is (Stripe does not base64-decode it). `v0` and other entries are ignored.
 */
import { checkTimestamp, hmac, rejected, sameBytes, type Scheme } from './scheme'

const kHex = /^[0-9a-f]{64}$/i

export const stripeScheme: Scheme = {
  keyOf (secret) {
    return Buffer.from(secret, 'utf8')
  },

  sign ({ body, keys, timestamp }) {
    const signatures = keys.map((key) => `v1=${hmac(key, `${timestamp}.`, body).toString('hex')}`)
    return { 'stripe-signature': `t=${timestamp},${signatures.join(',')}` }
  },

  verify ({ body, read, keys, now, tolerance }) {
    const header = read('stripe-signature')
    if (header === undefined || header === '') throw rejected('missing-signature', 'the stripe-signature header is missing')
    let t: string | undefined
    const given: Buffer[] = []
    for (const part of header.split(',')) {
      const eq = part.indexOf('=')
      const name = part.slice(0, eq).trim()
      const value = part.slice(eq + 1).trim()
      if (eq <= 0) continue
      if (name === 't') t = value
      else if (name === 'v1' && kHex.test(value)) given.push(Buffer.from(value, 'hex'))
    }
    if (t === undefined) throw rejected('missing-timestamp', 'the stripe-signature header has no t= timestamp')
    const timestamp = checkTimestamp(t, now, tolerance)
    if (given.length === 0) throw rejected('malformed-signature', 'the stripe-signature header holds no v1=<hex> signature')
    for (const key of keys) {
      const expected = hmac(key, `${timestamp}.`, body)
      for (const signature of given) if (sameBytes(signature, expected)) return { timestamp }
    }
    throw rejected('signature-mismatch', 'no signature matches the body and a secret')
  }
}

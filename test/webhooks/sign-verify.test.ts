import t from 'tap'
import { createHmac } from 'node:crypto'
import { InvalidOptionsError, WebhookVerificationError, signWebhook, verifyWebhook } from '../../index'

// The Standard Webhooks specification's published vector (its libraries' "sign function works" test).
const kVector = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
}
const kNow = kVector.timestamp * 1000
const other = 'whsec_' + Buffer.from('another secret of 24 bytes!').toString('base64')

function failure (fn: () => unknown): WebhookVerificationError {
  try {
    fn()
  } catch (err) {
    return err as WebhookVerificationError
  }
  throw new Error('expected a failure')
}

t.test('signs the specification vector and verifies it at its fixed timestamp', async (t) => {
  const headers = signWebhook(kVector.body, { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })
  t.same(headers, { 'webhook-id': kVector.id, 'webhook-timestamp': '1614265330', 'webhook-signature': kVector.signature })
  t.same(verifyWebhook(kVector.body, headers, { secret: kVector.secret, now: kNow }), { test: 2432232314 })
  t.same(verifyWebhook(Buffer.from(kVector.body), headers, { secret: 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now: kNow }),
    { test: 2432232314 }, 'the whsec_ prefix is optional, as in the specification libraries')
})

t.test('a tampered body, a wrong secret and unknown signature versions fail with signature-mismatch (401)', async (t) => {
  const headers = signWebhook(kVector.body, { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })
  const tampered = failure(() => verifyWebhook('{"test": 2432232315}', headers, { secret: kVector.secret, now: kNow }))
  t.ok(tampered instanceof WebhookVerificationError)
  t.match(tampered, { code: 'HTTP_SERVICES_ERR_WEBHOOK_VERIFY', statusCode: 401, reason: 'signature-mismatch' })
  t.match(failure(() => verifyWebhook(kVector.body, headers, { secret: other, now: kNow })), { statusCode: 401, reason: 'signature-mismatch' })
  const v1a = { ...headers, 'webhook-signature': headers['webhook-signature'].replace('v1,', 'v1a,') }
  t.match(failure(() => verifyWebhook(kVector.body, v1a, { secret: kVector.secret, now: kNow })), { reason: 'signature-mismatch' })
  const short = { ...headers, 'webhook-signature': 'v1,dawfeoifkpqwoekfpqoekf' }
  t.match(failure(() => verifyWebhook(kVector.body, short, { secret: kVector.secret, now: kNow })), { reason: 'signature-mismatch' })
})

t.test('the error never holds the secret or the expected signature', async (t) => {
  const headers = signWebhook(kVector.body, { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })
  const err = failure(() => verifyWebhook('{}', headers, { secret: kVector.secret, now: kNow }))
  const expected = signWebhook('{}', { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })['webhook-signature']
  const text = JSON.stringify({ ...err, message: err.message, stack: err.stack })
  t.notOk(text.includes('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'), 'no secret')
  t.notOk(text.includes(expected.slice(3)), 'no expected signature')
})

t.test('rotated secrets: a signature made with any of them passes, and signing with several sends one signature each', async (t) => {
  const headers = signWebhook(kVector.body, { secret: [other, kVector.secret], id: kVector.id, timestamp: kVector.timestamp })
  const entries = headers['webhook-signature'].split(' ')
  t.equal(entries.length, 2)
  t.equal(entries[1], kVector.signature)
  const oldOnly = { ...headers, 'webhook-signature': entries[0] }
  t.ok(verifyWebhook(kVector.body, oldOnly, { secrets: [kVector.secret, other], now: kNow }), 'the old secret still verifies')
  t.ok(verifyWebhook(kVector.body, headers, { secret: kVector.secret, now: kNow }))
})

t.test('several signatures in the header: one that matches is enough', async (t) => {
  const headers = {
    'webhook-id': kVector.id,
    'webhook-timestamp': String(kVector.timestamp),
    'webhook-signature': `v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ${kVector.signature} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=`
  }
  t.same(verifyWebhook(kVector.body, headers, { secret: kVector.secret, now: kNow }), { test: 2432232314 })
})

t.test('expired and future timestamps fail outside the tolerance, both directions, and pass at its edge', async (t) => {
  const sign = (offset: number): Record<string, string> => signWebhook(kVector.body, { secret: kVector.secret, timestamp: kVector.timestamp + offset })
  t.match(failure(() => verifyWebhook(kVector.body, sign(-301), { secret: kVector.secret, now: kNow })), { statusCode: 401, reason: 'timestamp-too-old' })
  t.match(failure(() => verifyWebhook(kVector.body, sign(301), { secret: kVector.secret, now: kNow })), { statusCode: 401, reason: 'timestamp-in-future' })
  t.ok(verifyWebhook(kVector.body, sign(-300), { secret: kVector.secret, now: kNow }), '300 s old passes')
  t.ok(verifyWebhook(kVector.body, sign(300), { secret: kVector.secret, now: kNow }), '300 s ahead passes')
  t.match(failure(() => verifyWebhook(kVector.body, sign(-61), { secret: kVector.secret, now: kNow, tolerance: 60_000 })), { reason: 'timestamp-too-old' })
})

t.test('missing and malformed headers fail with 400 and the check that failed', async (t) => {
  const headers = signWebhook(kVector.body, { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })
  const without = (name: string): Record<string, string> => Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name))
  const cases: Array<[Record<string, string>, string]> = [
    [without('webhook-id'), 'missing-id'],
    [without('webhook-timestamp'), 'missing-timestamp'],
    [without('webhook-signature'), 'missing-signature'],
    [{ ...headers, 'webhook-timestamp': 'hello' }, 'malformed-timestamp'],
    [{ ...headers, 'webhook-timestamp': '-5' }, 'malformed-timestamp'],
    [{ ...headers, 'webhook-signature': 'v1,' }, 'malformed-signature'],
    [{ ...headers, 'webhook-signature': 'garbage' }, 'malformed-signature']
  ]
  for (const [given, reason] of cases) {
    t.match(failure(() => verifyWebhook(kVector.body, given, { secret: kVector.secret, now: kNow })), { statusCode: 400, reason }, reason)
  }
})

t.test('a verified body that is not JSON fails with invalid-json (400); an empty one is undefined', async (t) => {
  const sign = (body: string): Record<string, string> => signWebhook(body, { secret: kVector.secret, timestamp: kVector.timestamp })
  t.match(failure(() => verifyWebhook('not json', sign('not json'), { secret: kVector.secret, now: kNow })), { statusCode: 400, reason: 'invalid-json' })
  t.equal(verifyWebhook('', sign(''), { secret: kVector.secret, now: kNow }), undefined)
})

t.test('headers are read case-insensitively, from a plain object or a fetch Headers', async (t) => {
  const headers = signWebhook(kVector.body, { secret: kVector.secret, id: kVector.id, timestamp: kVector.timestamp })
  const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]))
  t.ok(verifyWebhook(kVector.body, upper, { secret: kVector.secret, now: kNow }))
  t.ok(verifyWebhook(kVector.body, new Headers(headers), { secret: kVector.secret, now: kNow }))
})

t.test('headers that are not an object read as none: missing-id', async (t) => {
  t.match(failure(() => verifyWebhook('{}', null as never, { secret: kVector.secret })), { statusCode: 400, reason: 'missing-id' })
})

t.test('stripe: t=…,v1=<hex> over "t.body" keyed with the whsec_ string as it is', async (t) => {
  const secret = 'whsec_test_secret'
  const body = '{"id":"evt_1","type":"invoice.paid"}'
  const expected = createHmac('sha256', secret).update(`1614265330.${body}`).digest('hex')
  const headers = signWebhook(body, { scheme: 'stripe', secret, timestamp: 1614265330 })
  t.same(headers, { 'stripe-signature': `t=1614265330,v1=${expected}` })
  const withV0 = { 'Stripe-Signature': `t=1614265330,v1=${'0'.repeat(64)},v1=${expected},v0=abc` }
  t.same(verifyWebhook(body, withV0, { scheme: 'stripe', secret, now: kNow }), { id: 'evt_1', type: 'invoice.paid' })
  const opts = { scheme: 'stripe' as const, secret, now: kNow }
  t.match(failure(() => verifyWebhook(body + ' ', headers, opts)), { statusCode: 401, reason: 'signature-mismatch' })
  t.match(failure(() => verifyWebhook(body, {}, opts)), { statusCode: 400, reason: 'missing-signature' })
  t.match(failure(() => verifyWebhook(body, { 'stripe-signature': `v1=${expected}` }, opts)), { statusCode: 400, reason: 'missing-timestamp' })
  t.match(failure(() => verifyWebhook(body, { 'stripe-signature': 't=1614265330,v1=xyz' }, opts)), { statusCode: 400, reason: 'malformed-signature' })
  t.match(failure(() => verifyWebhook(body, { 'stripe-signature': `t=1614264000,v1=${expected}` }, opts)), { statusCode: 401, reason: 'timestamp-too-old' })
})

t.test('hmac: a hex HMAC of the body in X-Webhook-Signature, or GitHub style with sha256= in its own header', async (t) => {
  // GitHub's documented example ("Validating webhook deliveries").
  const github = { secret: "It's a Secret to Everybody", body: 'Hello, World!', signature: 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' }
  t.same(signWebhook(github.body, { scheme: 'hmac', secret: github.secret, header: 'X-Hub-Signature-256', prefix: 'sha256=' }),
    { 'x-hub-signature-256': github.signature })
  const body = '{"event":"clip.submitted"}'
  const headers = signWebhook(body, { scheme: 'hmac', secret: 'test-secret-key-12345' })
  t.same(Object.keys(headers), ['x-webhook-signature'])
  t.same(verifyWebhook(body, { 'X-Webhook-Signature': headers['x-webhook-signature'] }, { scheme: 'hmac', secret: 'test-secret-key-12345' }), { event: 'clip.submitted' })
  t.same(verifyWebhook(body, { 'x-webhook-signature': 'sha256=' + headers['x-webhook-signature'] }, { scheme: 'hmac', secret: 'test-secret-key-12345' }), { event: 'clip.submitted' }, 'the sha256= prefix is accepted')
  const opts = { scheme: 'hmac' as const, secret: 'test-secret-key-12345' }
  t.match(failure(() => verifyWebhook(body + ' ', headers, opts)), { statusCode: 401, reason: 'signature-mismatch' })
  t.match(failure(() => verifyWebhook(body, {}, opts)), { statusCode: 400, reason: 'missing-signature' })
  t.match(failure(() => verifyWebhook(body, { 'x-webhook-signature': 'nothex' }, opts)), { statusCode: 400, reason: 'malformed-signature' })
})

t.test('an empty secret, a bare whsec_ and other bad options are refused at configuration, never showing the secret', async (t) => {
  const refused = (fn: () => unknown, key: string): void => {
    const err = failure(fn) as unknown as InvalidOptionsError
    t.ok(err instanceof InvalidOptionsError, `${key}: InvalidOptionsError`)
    t.equal(err.key, key)
  }
  refused(() => signWebhook('x', { secret: '' }), 'secret')
  refused(() => signWebhook('x', { secret: 'whsec_' }), 'secret')
  refused(() => signWebhook('x', { secret: 'whsec_' , scheme: 'stripe' }), 'secret')
  refused(() => signWebhook('x', { secret: 'whsec_not base64!' }), 'secret')
  refused(() => signWebhook('x', { secret: [kVector.secret, ''] }), 'secret[1]')
  refused(() => signWebhook('x', { secret: kVector.secret, id: 'a.b' }), 'id')
  refused(() => signWebhook('x', { secret: kVector.secret, timestamp: 1.5 }), 'timestamp')
  refused(() => signWebhook('x', { secret: kVector.secret, scheme: 'nope' as 'hmac' }), 'scheme')
  refused(() => signWebhook(42 as unknown as string, { secret: kVector.secret }), 'body')
  refused(() => signWebhook('x', null as never), 'options')
  refused(() => signWebhook('x', { scheme: 'hmac', secret: 'a', prefix: 'a\n' }), 'prefix')
  refused(() => verifyWebhook(42 as unknown as string, {}, { secret: kVector.secret }), 'body')
  refused(() => verifyWebhook('x', {}, null as never), 'options')
  refused(() => verifyWebhook('x', {}, { secret: kVector.secret, now: Number.NaN }), 'now')
  refused(() => verifyWebhook('x', {}, { secrets: 'a' as never }), 'secrets[0]')
  refused(() => verifyWebhook('x', {}, { secrets: [] }), 'secrets')
  refused(() => verifyWebhook('x', {}, { secret: 'a', secrets: ['b'] }), 'secret')
  refused(() => verifyWebhook('x', {}, { secret: kVector.secret, tolerance: -1 }), 'tolerance')
  refused(() => verifyWebhook('x', {}, { scheme: 'hmac', secret: 'a', header: 'bad header' }), 'header')
  // Standard keys of fewer than 16 bytes (the specification's are 24 to 64) are refused, with or without the prefix.
  refused(() => signWebhook('x', { secret: 'whsec_YQ==' }), 'secret')
  refused(() => signWebhook('x', { secret: 'password' }), 'secret')
  refused(() => signWebhook('x', { secret: 'whsec_' + Buffer.alloc(15, 1).toString('base64') }), 'secret')
  refused(() => verifyWebhook('x', {}, { secrets: [kVector.secret, 'whsec_YQ=='] }), 'secrets[1]')
  t.match(failure(() => signWebhook('x', { secret: 'whsec_YQ==' })).message, /^secret: expected a secret for the standard scheme: .*at least 16 bytes/)
  t.notMatch(failure(() => signWebhook('x', { secret: 'whsec_YQ==' })).message, /YQ/, 'the short secret is not in the message')
  t.ok(signWebhook('x', { secret: 'whsec_' + Buffer.alloc(16, 1).toString('base64') }), '16 bytes is enough')
  t.ok(signWebhook('x', { secret: 'YQ==', scheme: 'stripe' }), 'stripe and hmac keys are the secret as it is: not checked for length')
  const err = failure(() => signWebhook('x', { secret: 'whsec_abc def' }))
  t.notOk(err.message.includes('abc def'), 'the secret is not in the message')
  t.match(err.message, /^secret: expected a secret for the standard scheme/)
})

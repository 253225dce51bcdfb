import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { waitUntil } from '../helpers/wait'
import { MemoryIdempotencyStore, signWebhook, webhookReceiver, type IdempotencyStore, type WebhookMeta, type WebhookReceiverOptions } from '../../index'

const secret = 'whsec_' + Buffer.from('a receiver secret of 32 bytes!!!').toString('base64')

async function setup (t: tap.Test, options: Partial<WebhookReceiverOptions> = {}): Promise<{ app: FastifyInstance, events: unknown[] }> {
  const events: unknown[] = []
  const app = Fastify()
  app.post('/json', async (request) => ({ parsed: request.body }))
  await app.register(webhookReceiver, { path: '/hooks', secret, handler: (event) => { events.push(event) }, ...options })
  await app.ready()
  t.teardown(async () => { await app.close() })
  return { app, events }
}

function delivery (body: string, id = 'msg_1'): { payload: string, headers: Record<string, string> } {
  return { payload: body, headers: { 'content-type': 'application/json', ...signWebhook(body, { secret, id }) } }
}

t.test('reads the exact raw bytes on its route while another route still parses JSON', async (t) => {
  const { app, events } = await setup(t)
  // Spacing and key order a parse-then-serialize would change: only the raw bytes verify.
  const body = '{ "type" : "invoice.paid",\n  "data": {"b":1,"a":2} }'
  const res = await app.inject({ method: 'POST', url: '/hooks', ...delivery(body) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { received: true })
  t.same(events, [{ type: 'invoice.paid', data: { b: 1, a: 2 } }])
  const other = await app.inject({ method: 'POST', url: '/json', payload: { a: 1 } })
  t.same(other.json(), { parsed: { a: 1 } }, 'the other route got a parsed body')
  const textHooks = await app.inject({ method: 'POST', url: '/hooks', payload: '{"x":1}', headers: { ...signWebhook('{"x":1}', { secret, id: 'msg_t' }), 'content-type': 'text/plain' } })
  t.equal(textHooks.statusCode, 200, 'any content type is read raw on the receiver route')
})

t.test('answers 400 or 401 with the failed check, and never runs the handler', async (t) => {
  const { app, events } = await setup(t)
  const { payload, headers } = delivery('{"a":1}')
  const tampered = await app.inject({ method: 'POST', url: '/hooks', payload: '{"a":2}', headers })
  t.equal(tampered.statusCode, 401)
  t.match(tampered.json(), { code: 'HTTP_SERVICES_ERR_WEBHOOK_VERIFY', message: /no signature matches/ })
  const missing = await app.inject({ method: 'POST', url: '/hooks', payload, headers: { 'content-type': 'application/json' } })
  t.equal(missing.statusCode, 400)
  t.match(missing.json(), { message: /webhook-id header is missing/ })
  const old = signWebhook(payload, { secret, id: 'msg_old', timestamp: Math.floor(Date.now() / 1000) - 3600 })
  const expired = await app.inject({ method: 'POST', url: '/hooks', payload, headers: { ...old, 'content-type': 'application/json' } })
  t.equal(expired.statusCode, 401)
  t.same(events, [])
})

t.test('a replay of one id is acknowledged without running the handler again', async (t) => {
  const { app, events } = await setup(t)
  const first = delivery('{"n":1}', 'msg_replay')
  t.same((await app.inject({ method: 'POST', url: '/hooks', ...first })).json(), { received: true })
  const again = await app.inject({ method: 'POST', url: '/hooks', ...delivery('{"n":1}', 'msg_replay') })
  t.equal(again.statusCode, 200)
  t.same(again.json(), { received: true, duplicate: true })
  t.equal(events.length, 1)
})

t.test('two concurrent deliveries of one id run the handler once: the second waits for the first', async (t) => {
  let release: () => void = () => {}
  let runs = 0
  let waiting = 0
  const store = new MemoryIdempotencyStore()
  t.teardown(() => store.close())
  const settled = store.settled.bind(store)
  store.settled = async (key, timeout) => { waiting++; await settled(key, timeout) }
  const { app } = await setup(t, {
    store,
    handler: async () => {
      runs++
      await new Promise<void>((resolve) => { release = resolve })
    }
  })
  const first = app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_race') })
  while (runs === 0) await new Promise((resolve) => setImmediate(resolve))
  const second = app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_race') })
  await waitUntil('the second delivery waits', () => waiting === 1)
  release()
  const [a, b] = await Promise.all([first, second])
  t.same(a.json(), { received: true })
  t.same(b.json(), { received: true, duplicate: true })
  t.equal(runs, 1)
})

t.test('a handler that throws answers 500 and leaves the id unprocessed: the redelivery runs it', async (t) => {
  let calls = 0
  const { app } = await setup(t, {
    handler: () => {
      calls++
      if (calls === 1) throw new Error('database down: secret detail')
    }
  })
  const failed = await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_retry') })
  t.equal(failed.statusCode, 500)
  t.match(failed.json(), { code: 'HTTP_SERVICES_ERR_WEBHOOK_HANDLER', message: 'webhook msg_retry: the handler failed' })
  const redelivered = await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_retry') })
  t.same(redelivered.json(), { received: true })
  t.equal(calls, 2)
})

t.test('a duplicate still held after its waits is answered 409 with Retry-After', async (t) => {
  const store = new MemoryIdempotencyStore()
  t.teardown(() => store.close())
  await store.claim('/hooks\nmsg_stuck', 60_000)
  // settled() resolving at once stands for waits that time out while the other delivery still holds the id.
  store.settled = async () => {}
  const { app } = await setup(t, { store, lease: 2000 })
  const res = await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_stuck') })
  t.equal(res.statusCode, 409)
  t.equal(res.headers['retry-after'], '2')
})

t.test('the stripe scheme takes the event id from the body; a failing store still runs the handler', async (t) => {
  const stripeSecret = 'whsec_stripe'
  const store = new MemoryIdempotencyStore()
  t.teardown(() => store.close())
  const seen: Array<{ id?: string }> = []
  const { app } = await setup(t, { secret: stripeSecret, scheme: 'stripe', store, handler: (_event, _request, meta) => { seen.push(meta) } })
  const body = '{"id":"evt_1","type":"charge.succeeded"}'
  const headers = { ...signWebhook(body, { secret: stripeSecret, scheme: 'stripe' }), 'content-type': 'application/json' }
  await app.inject({ method: 'POST', url: '/hooks', payload: body, headers })
  const dup = await app.inject({ method: 'POST', url: '/hooks', payload: body, headers })
  t.same(dup.json(), { received: true, duplicate: true })
  t.equal(seen.length, 1)
  t.equal(seen[0].id, 'evt_1')
  store.claim = async () => { throw new Error('store down') }
  const unguarded = await app.inject({ method: 'POST', url: '/hooks', payload: body, headers })
  t.same(unguarded.json(), { received: true })
  t.equal(seen.length, 2, 'at least once when the store fails')
})

t.test('a body over bodyLimit is refused with 413', async (t) => {
  const { app, events } = await setup(t, { bodyLimit: 16 })
  const res = await app.inject({ method: 'POST', url: '/hooks', ...delivery(JSON.stringify({ text: 'x'.repeat(64) })) })
  t.equal(res.statusCode, 413)
  t.same(events, [])
})

t.test('two receivers on two paths, each with its own secret', async (t) => {
  const app = Fastify()
  const seen: string[] = []
  await app.register(webhookReceiver, { path: '/a', secret, handler: () => { seen.push('a') } })
  await app.register(webhookReceiver, { path: '/b', secret: 'plain', scheme: 'hmac', handler: () => { seen.push('b') } })
  t.teardown(async () => { await app.close() })
  await app.inject({ method: 'POST', url: '/a', ...delivery('{}') })
  await app.inject({ method: 'POST', url: '/b', payload: '{}', headers: { ...signWebhook('{}', { scheme: 'hmac', secret: 'plain' }), 'content-type': 'application/json' } })
  t.same(seen, ['a', 'b'])
})

t.test('bad options fail registration naming the key, never the secret', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ path: '/h', secret: '', handler: () => {} }, /^webhookReceiver\.secret: expected a non-empty string/],
    [{ path: '/h', secret: 'whsec_', handler: () => {} }, /^webhookReceiver\.secret: expected a secret, got a bare "whsec_" prefix/],
    [{ path: '/h', secrets: [secret, 'whsec_'], handler: () => {} }, /^webhookReceiver\.secrets\[1\]/],
    [{ path: '/h', secret: 'whsec_YQ==', handler: () => {} }, /^webhookReceiver\.secret: expected a secret for the standard scheme: .*at least 16 bytes/],
    [{ path: '/h', handler: () => {} }, /^webhookReceiver\.secret: give either secret or secrets/],
    [{ path: 'h', secret, handler: () => {} }, /^webhookReceiver\.path: expected a path starting with "\/"/],
    [{ path: '/h', secret }, /^webhookReceiver\.handler: expected a function/],
    [{ path: '/h', secret, handler: () => {}, ttl: 0 }, /^webhookReceiver\.ttl/],
    [{ path: '/h', secret, handler: () => {}, store: {} }, /^webhookReceiver\.store: expected an idempotency store/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    const err = await app.register(webhookReceiver, options as unknown as WebhookReceiverOptions).ready().then(() => undefined, (e: Error) => e)
    t.match(err, { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message }, String(message))
    t.notMatch(String(err?.message), /YQ==/, 'never the value')
    await app.close()
  }
})

/** Calls to the handler, and a way to hold each one until the test lets it end (or throw). */
function gatedHandler (): { calls: () => number, finish: (n: number, err?: Error) => void, handler: () => Promise<void> } {
  const gates: Array<{ promise: Promise<void>, resolve: () => void, reject: (err: Error) => void }> = []
  const gate = (n: number): (typeof gates)[number] => {
    while (gates.length <= n) {
      let resolve!: () => void
      let reject!: (err: Error) => void
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
      gates.push({ promise, resolve, reject })
    }
    return gates[n]
  }
  let calls = 0
  return {
    calls: () => calls,
    finish: (n, err) => {
      if (err === undefined) gate(n).resolve()
      else gate(n).reject(err)
    },
    handler: async () => { await gate(calls++).promise }
  }
}

t.test('hmac: a captured delivery resent with a new (unsigned) webhook-id header is a duplicate', async (t) => {
  const metas: WebhookMeta[] = []
  const { app } = await setup(t, { secret: 'plain', scheme: 'hmac', handler: (_e, _r, meta) => { metas.push(meta) } })
  const body = JSON.stringify({ type: 'invoice.paid', data: { amount: 100 } })
  const headers = { 'content-type': 'application/json', ...signWebhook(body, { secret: 'plain', scheme: 'hmac' }) }
  const answers = []
  for (const id of ['evt_1', 'evt_2', 'evt_3', '']) {
    answers.push((await app.inject({ method: 'POST', url: '/hooks', payload: body, headers: { ...headers, 'webhook-id': id } })).json())
  }
  t.same(answers, [{ received: true }, { received: true, duplicate: true }, { received: true, duplicate: true }, { received: true, duplicate: true }])
  t.same(metas, [{ id: undefined, timestamp: undefined }], 'the handler ran once, and an unsigned header is not its id')
  const other = JSON.stringify({ type: 'invoice.paid', data: { amount: 101 } })
  await app.inject({ method: 'POST', url: '/hooks', payload: other, headers: { 'content-type': 'application/json', ...signWebhook(other, { secret: 'plain', scheme: 'hmac' }) } })
  t.equal(metas.length, 2, 'another body is another event')
})

t.test('stripe without an id in the body: keyed on the body, whatever the webhook-id header or the signed t', async (t) => {
  const stripeSecret = 'whsec_stripe'
  const { app, events } = await setup(t, { secret: stripeSecret, scheme: 'stripe' })
  const body = '{"type":"charge.succeeded"}'
  const now = Math.floor(Date.now() / 1000)
  const at = (timestamp: number, id: string): Record<string, string> => ({ 'content-type': 'application/json', 'webhook-id': id, ...signWebhook(body, { secret: stripeSecret, scheme: 'stripe', timestamp }) })
  t.same((await app.inject({ method: 'POST', url: '/hooks', payload: body, headers: at(now, 'a') })).json(), { received: true })
  t.same((await app.inject({ method: 'POST', url: '/hooks', payload: body, headers: at(now, 'b') })).json(), { received: true, duplicate: true }, 'a replay with a new header')
  t.same((await app.inject({ method: 'POST', url: '/hooks', payload: body, headers: at(now - 10, 'c') })).json(), { received: true, duplicate: true }, 're-signed with another t')
  t.equal(events.length, 1)
})

t.test('standard: the signed webhook-id is the key, so one body under two ids is two events', async (t) => {
  const { app, events } = await setup(t)
  await app.inject({ method: 'POST', url: '/hooks', ...delivery('{"same":1}', 'msg_a') })
  await app.inject({ method: 'POST', url: '/hooks', ...delivery('{"same":1}', 'msg_b') })
  t.equal(events.length, 2)
})

t.test('a lease has an owner: a handler outliving it and then throwing does not free the id its successor holds', async (t) => {
  let at = 1_000_000
  const store = new MemoryIdempotencyStore({ now: () => at })
  t.teardown(() => store.close())
  let waiting = 0
  const settled = store.settled.bind(store)
  store.settled = async (key, timeout) => { waiting++; await settled(key, timeout) }
  const h = gatedHandler()
  const { app } = await setup(t, { store, lease: 1000, handler: h.handler })
  const first = app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_slow') })
  await waitUntil('the first delivery runs', () => h.calls() === 1)
  at += 1001 // its lease lapses on the fake clock: a redelivery takes the id over
  const second = app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_slow') })
  await waitUntil('the redelivery took the id over', () => h.calls() === 2)
  h.finish(0, new Error('late failure'))
  t.equal((await first).statusCode, 500)
  const third = app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_slow') })
  await waitUntil('the third delivery waits (or runs)', () => waiting === 1 || h.calls() === 3)
  t.equal(h.calls(), 2, 'the late release did not free the id: the third delivery waits instead of running')
  h.finish(1)
  h.finish(2) // (ends a third run, were there one, rather than hang)
  t.same((await second).json(), { received: true })
  t.same((await third).json(), { received: true, duplicate: true })
})

t.test('a custom store answering plain values (no promises) works, and one throwing at once runs the handler unguarded', async (t) => {
  const held = new Map<string, string>()
  const calls: string[] = []
  const store: IdempotencyStore = {
    claim (key) {
      calls.push('claim')
      const value = held.get(key)
      if (value === 'done') return { result: 'done' }
      if (value !== undefined) return { result: 'busy' }
      const token = `t${calls.length}`
      held.set(key, token)
      return { result: 'claimed', token }
    },
    complete (key, token) {
      calls.push('complete')
      if (held.get(key) === token) held.set(key, 'done')
    },
    release (key, token) {
      calls.push('release')
      if (held.get(key) === token) held.delete(key)
    },
    settled () { calls.push('settled') }
  }
  let n = 0
  const { app } = await setup(t, { store, handler: () => { if (++n === 1) throw new Error('first fails') } })
  t.equal((await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_plain') })).statusCode, 500)
  t.same((await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_plain') })).json(), { received: true })
  t.same((await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_plain') })).json(), { received: true, duplicate: true })
  t.same(calls, ['claim', 'release', 'claim', 'complete', 'claim'])
  t.same([...held.values()], ['done'])
  store.claim = () => { throw new Error('store down') }
  t.same((await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_plain') })).json(), { received: true })
  t.equal(n, 3, 'unguarded: at least once')
  store.claim = () => 'claimed' as never
  t.same((await app.inject({ method: 'POST', url: '/hooks', ...delivery('{}', 'msg_plain') })).json(), { received: true }, 'a claim without a token is a failed store')
  t.equal(n, 4)
})

import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import {
  createHttpServices, webhookReceiver, WebhookDeliveryError, type HttpServices, type WebhookOptions
} from '../../index'
import { MemoryDeadLetterStore, type DeadLetter, type DeadLetterStore } from '../../lib/webhooks/dead-letters'
import { nextWait, WebhookSender, type SenderRegistry } from '../../lib/webhooks/sender'
import { closedPort } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'

const secret = 'whsec_' + Buffer.from('the sender and receiver share this').toString('base64')

interface Seen { status: number, id: string | undefined, timestamp: string | undefined }

/**
 * A real receiver (the webhookReceiver plugin) on 127.0.0.1, behind a hook that answers the statuses of `statuses`
 * in turn (then lets the receiver answer): the sender's attempts meet a real verification.
 */
async function receiverApp (t: tap.Test, statuses: number[], scheme: 'standard' | 'stripe' = 'standard'): Promise<{ url: string, seen: Seen[], events: unknown[] }> {
  const seen: Seen[] = []
  const events: unknown[] = []
  const app: FastifyInstance = Fastify()
  let n = 0
  app.addHook('onRequest', async (request, reply) => {
    const status = statuses[n++]
    const entry = { status: status ?? 200, id: request.headers['webhook-id'] as string | undefined, timestamp: request.headers['webhook-timestamp'] as string | undefined }
    seen.push(entry)
    if (status !== undefined) {
      if (status === 429 || status === 503) void reply.header('retry-after', '0')
      return await reply.code(status).send({ status })
    }
  })
  await app.register(webhookReceiver, { path: '/hooks', secret, scheme, handler: (event) => { events.push(event) } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close() })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, seen, events }
}

async function sender (t: tap.Test, url: string, webhook: Partial<WebhookOptions> = {}): Promise<HttpServices> {
  const services = createHttpServices({ services: { partner: { baseUrl: url, webhook: { secret, path: '/hooks', schedule: [0, 1, 1], ...webhook } } } })
  await services.open()
  t.teardown(async () => { await services.close() })
  return services
}

t.test('delivers to a real receiver through 503, 503, 200 with one webhook-id and a fresh signature each time', async (t) => {
  const receiver = await receiverApp(t, [503, 503])
  const services = await sender(t, receiver.url)
  const delivered = await services.webhooks.sendAndWait('partner', { type: 'invoice.paid', data: { id: 'inv_1' } })
  t.same(delivered.attempts.map((a) => a.status), [503, 503, 200])
  t.equal(receiver.seen.length, 3)
  t.same(new Set(receiver.seen.map((s) => s.id)), new Set([delivered.id]), 'every attempt carried the same webhook-id')
  t.match(delivered.id, /^msg_/)
  t.match(receiver.events, [{ type: 'invoice.paid', data: { id: 'inv_1' }, timestamp: String }])
  t.match(services.stats().partner.webhooks, { queued: 0, delivered: 1, deadLettered: 0, attempts: 3, disabled: false })
})

t.test('each attempt is signed afresh: a retry a second later carries a new timestamp under the same id', async (t) => {
  const receiver = await receiverApp(t, [503])
  // 1100 ms between the attempts: their Unix-second timestamps cannot be equal.
  const services = await sender(t, receiver.url, { schedule: [0, 1100] })
  const delivered = await services.webhooks.sendAndWait('partner', { type: 'x' })
  t.same(delivered.attempts.map((a) => a.status), [503, 200], 'the second attempt verified at the receiver')
  t.equal(receiver.seen[0].id, receiver.seen[1].id)
  t.ok(Number(receiver.seen[1].timestamp) > Number(receiver.seen[0].timestamp), 'a fresh timestamp')
})

t.test('send resolves once the event is queued, before it is delivered', async (t) => {
  const receiver = await receiverApp(t, [])
  const services = await sender(t, receiver.url)
  const receipt = await services.webhooks.send('partner', { type: 'a.b' }, { id: 'msg_mine', path: '/hooks' })
  t.same(receipt, { id: 'msg_mine', service: 'partner' })
  t.same(services.webhooks.pending('partner').map((p) => p.id), ['msg_mine'], 'queued, not sent yet')
  await waitUntil('the event is delivered', () => receiver.events.length === 1)
  await waitUntil('the queue is empty', () => services.webhooks.pending().length === 0)
  t.equal(receiver.seen[0].id, 'msg_mine')
})

t.test('a 4xx stops the schedule: sendAndWait rejects and the event is a dead letter', async (t) => {
  const receiver = await receiverApp(t, [422])
  const services = await sender(t, receiver.url)
  const err = await services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof WebhookDeliveryError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_WEBHOOK_DELIVERY', reason: 'rejected', service: 'partner', attempts: 1, outcomes: [{ attempt: 1, status: 422 }] })
  t.equal(receiver.seen.length, 1, 'no retry')
  t.match(await services.webhooks.deadLetters('partner'), [{ reason: 'rejected', attempts: [{ status: 422 }] }])
})

t.test('a 410 disables the endpoint: later sends fail fast until it is enabled again', async (t) => {
  const receiver = await receiverApp(t, [410])
  const services = await sender(t, receiver.url)
  await t.rejects(services.webhooks.sendAndWait('partner', { type: 'x' }), { reason: 'gone', message: /410 Gone/ })
  t.ok(services.webhooks.isDisabled('partner'))
  t.equal(services.stats().partner.webhooks && (services.stats().partner.webhooks as { disabled: boolean }).disabled, true)
  await t.rejects(services.webhooks.send('partner', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_WEBHOOK_DELIVERY', reason: 'disabled', message: /disabled/ })
  t.equal(receiver.seen.length, 1, 'the refused send never reached the endpoint')
  services.webhooks.enable('partner')
  const delivered = await services.webhooks.sendAndWait('partner', { type: 'x' })
  t.same(delivered.attempts.map((a) => a.status), [200])
})

t.test('an event that exhausts its schedule is a dead letter with every attempt, and replay delivers it under its id', async (t) => {
  const receiver = await receiverApp(t, [503, 500, 429])
  const services = await sender(t, receiver.url)
  const err = await services.webhooks.sendAndWait('partner', { type: 'order.shipped', data: { n: 1 } }).then(() => undefined, (e: unknown) => e) as WebhookDeliveryError
  t.match(err, { reason: 'exhausted', attempts: 3 })
  t.same(err.outcomes.map((o) => o.status), [503, 500, 429])
  const [letter] = await services.webhooks.deadLetters()
  t.match(letter, { id: err.webhookId, service: 'partner', path: '/hooks', type: 'order.shipped', reason: 'exhausted' })
  t.equal(letter.attempts.length, 3)
  t.notOk(JSON.stringify(letter).includes(secret.slice(6)), 'no secret in a dead letter')
  await services.webhooks.replay(letter.id)
  await waitUntil('the replay is delivered', () => receiver.events.length === 1)
  t.equal(receiver.seen[3].id, letter.id, 'the replay kept the id')
  t.same(await services.webhooks.deadLetters(), [])
  await t.rejects(services.webhooks.replay(letter.id), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
})

t.test('network errors are retried on the schedule, and the service retries stay off', async (t) => {
  const services = await sender(t, `http://127.0.0.1:${await closedPort()}`, { schedule: [0, 1] })
  const err = await services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e) as WebhookDeliveryError
  t.match(err, { reason: 'exhausted', attempts: 2 })
  t.same(err.outcomes.map((o) => o.error), ['HTTP_SERVICES_ERR_CONNECTION', 'HTTP_SERVICES_ERR_CONNECTION'])
  t.equal(services.stats().partner.attempts, 2, 'one request per scheduled attempt')
})

t.test('the stripe scheme signs for a stripe receiver, the id in the signed body (and a webhook-id header besides)', async (t) => {
  const receiver = await receiverApp(t, [], 'stripe')
  const services = await sender(t, receiver.url, { scheme: 'stripe' })
  const delivered = await services.webhooks.sendAndWait('partner', { type: 'x' })
  t.equal(receiver.seen[0].id, delivered.id)
  t.match(receiver.events, [{ id: delivered.id, type: 'x' }], 'the id is in the signed body')
})

t.test('close stops the queue: waiting callers are rejected and undelivered events stay listable', async (t) => {
  const receiver = await receiverApp(t, [503])
  const services = createHttpServices({ services: { partner: { baseUrl: receiver.url, webhook: { secret, path: '/hooks', schedule: [0, 60_000] } } } })
  await services.open()
  const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e)
  await waitUntil('the first attempt failed', () => services.webhooks.pending()[0]?.attempts[0]?.status === 503)
  await services.close()
  t.match(await waiting, { reason: 'closed', statusCode: 503, message: /registry closed/ })
  t.equal(services.webhooks.pending().length, 1)
  await t.rejects(services.webhooks.send('partner', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
  t.equal(receiver.seen.length, 1, 'no attempt after close')
})

t.test('an attempt in flight when the registry closes ends the delivery as closed, and the event stays pending', async (t) => {
  const never = Fastify()
  never.post('/hooks', () => new Promise(() => {}))
  await never.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await never.close() })
  const services = createHttpServices({ closeTimeout: 50, services: { partner: { baseUrl: `http://127.0.0.1:${(never.server.address() as AddressInfo).port}`, webhook: { secret, path: '/hooks' } } } })
  await services.open()
  const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e)
  await waitUntil('the attempt is in flight', () => services.stats().partner.inFlight === 1)
  await services.close()
  t.match(await waiting, { reason: 'closed' })
  await waitUntil('the attempt ended', () => services.webhooks.pending()[0]?.attempts[0]?.error !== undefined)
  t.match(services.webhooks.pending(), [{ attempts: [{ attempt: 1, error: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' }] }])
  t.same(await services.webhooks.deadLetters(), [], 'closing is not a failure of the event')
})

t.test('an event sent before the registry opened is retried on its schedule, not dropped', async (t) => {
  const receiver = await receiverApp(t, [])
  const services = createHttpServices({ services: { partner: { baseUrl: receiver.url, webhook: { secret, path: '/hooks', schedule: [0, 300] } } } })
  t.teardown(async () => { await services.close() })
  const waiting = services.webhooks.sendAndWait('partner', { type: 'early' })
  await waitUntil('the first attempt failed', () => services.webhooks.pending()[0]?.attempts[0]?.error !== undefined)
  await services.open()
  const delivered = await waiting
  t.match(delivered.attempts, [{ error: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' }, { status: 200 }])
})

t.test('an id sent again, as with BullMQ: queued or delivered (within a day) is that delivery, a dead letter is refused', async (t) => {
  const receiver = await receiverApp(t, [422])
  const services = await sender(t, receiver.url, { schedule: [0] })
  const w = services.webhooks
  await t.rejects(w.sendAndWait('partner', { type: 'x' }, { id: 'msg_dead' }), { reason: 'rejected', message: /refused/ })
  await t.rejects(w.send('partner', { type: 'x' }, { id: 'msg_dead' }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /msg_dead is a dead letter: replay\(id\)/ })
  const [first, second] = await Promise.all([
    w.sendAndWait('partner', { type: 'x' }, { id: 'msg_same' }),
    w.sendAndWait('partner', { type: 'x' }, { id: 'msg_same' })
  ])
  t.same(second, first, 'two sends of one id wait for the one delivery')
  const again = await w.sendAndWait('partner', { type: 'x' }, { id: 'msg_same' })
  t.same(again, first, 'sent again once delivered: what that delivery answered')
  await w.send('partner', { type: 'x' }, { id: 'msg_same' })
  t.same(receiver.seen.map((s) => s.id), ['msg_dead', 'msg_same'], 'nothing more was sent')
  t.match(services.stats().partner.webhooks, { queued: 0, delivered: 1, deadLettered: 1, attempts: 2 })
})

t.test('sendAndWait with close() a few microtasks later, at each offset: always settles (closed), never hangs', async (t) => {
  for (let offset = 0; offset < 8; offset++) {
    const services = createHttpServices({ services: { partner: { baseUrl: 'http://127.0.0.1:1', webhook: { secret, schedule: [60_000] } } } })
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => 'delivered', (e: { reason?: string, code?: string }) => e.reason ?? e.code)
    for (let i = 0; i < offset; i++) await Promise.resolve()
    await services.close()
    t.match(await within(`the caller settles (close ${offset} microtasks later)`, waiting, 2000), /^(closed|HTTP_SERVICES_ERR_CLIENT_CLOSED)$/)
  }
})

t.test('bad events and unknown or non-webhook services are refused; a queued id sent again is that delivery', async (t) => {
  const services = createHttpServices({ services: { plain: { baseUrl: 'http://127.0.0.1:1' }, partner: { baseUrl: 'http://127.0.0.1:1', webhook: { secret, schedule: [60_000] } } } })
  t.teardown(async () => { await services.close() })
  const w = services.webhooks
  await t.rejects(w.send('plain', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /plain has no webhook option/ })
  await t.rejects(w.send('nope', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE' })
  await t.rejects(w.send('partner', { type: '' }), { message: /non-empty string type/ })
  await t.rejects(w.send('partner', { type: 'x' }, { id: 'a.b' }), { message: /webhook id/ })
  await t.rejects(w.send('partner', { type: 'x' }, { path: 'x' }), { message: /path must start/ })
  await t.rejects(w.send('partner', { type: 'x', data: { n: 1n } }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /cannot be sent as JSON/ })
  await w.send('partner', { type: 'x' }, { id: 'msg_once' })
  await w.send('partner', { type: 'x' }, { id: 'msg_once' })
  t.equal(w.pending('partner').length, 1, 'an id already queued is that delivery: queued once')
  t.match(services.stats().partner.webhooks, { queued: 1 })
  t.notOk('webhooks' in services.stats().plain, 'stats only for webhook services')
})

t.test('the webhook option is validated naming the service and key, never showing the secret', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ secret: '' }, /^services\.partner\.webhook\.secret: expected a non-empty string/],
    [{ secret: 'whsec_' }, /^services\.partner\.webhook\.secret: expected a secret, got a bare "whsec_" prefix/],
    [{ secret: ['whsec_', 'x'], scheme: 'hmac' }, /^services\.partner\.webhook\.secret\[0\]/],
    [{ secret: ['a', 'b'], scheme: 'hmac' }, /^services\.partner\.webhook\.secret: the hmac scheme carries one signature/],
    [{}, /^services\.partner\.webhook\.secret: expected/],
    [{ secret, schedule: [] }, /^services\.partner\.webhook\.schedule: expected a non-empty array/],
    [{ secret, path: 'x' }, /^services\.partner\.webhook\.path/],
    [{ secret: 'whsec_top secret!' }, /^services\.partner\.webhook\.secret: expected a secret for the standard scheme/]
  ]
  for (const [webhook, message] of cases) {
    t.throws(() => createHttpServices({ services: { partner: { baseUrl: 'http://127.0.0.1:1', webhook: webhook as WebhookOptions } } }),
      { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message }, String(message))
  }
  const err = (() => { try { createHttpServices({ services: { partner: { baseUrl: 'http://127.0.0.1:1', webhook: { secret: 'whsec_top secret!' } } } }) } catch (e) { return e as Error } })()
  t.notOk(err?.message.includes('top secret'))
  t.throws(() => createHttpServices({ services: { partner: { baseUrl: 'http://127.0.0.1:1', fallback: () => null, webhook: { secret } } } }),
    { message: /^services\.partner\.webhook: cannot be combined with fallback/ }, 'a fallback would make a failed delivery look delivered')
  t.throws(() => createHttpServices({ defaults: { fallback: () => null }, services: { partner: { baseUrl: 'http://127.0.0.1:1', webhook: { secret } } } }),
    { message: /cannot be combined with fallback/ }, 'from defaults too')
  t.throws(() => createHttpServices({ defaults: { webhook: { secret } } as never }), { message: /defaults\.webhook: unknown option \(only a service may set it/ })
})

t.test('Retry-After lengthens the next wait within the schedule, never shortens it', async (t) => {
  const schedule = [0, 5000, 300_000]
  t.equal(nextWait(schedule, 1, undefined), 5000)
  t.equal(nextWait(schedule, 1, 60_000), 60_000, 'longer than scheduled: honoured')
  t.equal(nextWait(schedule, 1, 1000), 5000, 'shorter than scheduled: the schedule')
  t.equal(nextWait(schedule, 1, 10_000_000), 300_000, 'capped at the longest step')
})

t.test('an attempt in flight at close() that the receiver then accepts resolves sendAndWait as delivered', async (t) => {
  let answer: (() => void) | undefined
  const slow = Fastify()
  slow.post('/hooks', async () => { await new Promise<void>((resolve) => { answer = resolve }); return { received: true } })
  await slow.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await slow.close() })
  const services = createHttpServices({ services: { partner: { baseUrl: `http://127.0.0.1:${(slow.server.address() as AddressInfo).port}`, webhook: { secret, path: '/hooks' } } } })
  await services.open()
  let outcome = 'pending'
  const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }).then((d) => { outcome = 'delivered'; return d }, (e: unknown) => { outcome = 'rejected'; throw e })
  // Held by the receiver's handler, not only sent: answering before the handler runs would answer nothing.
  await waitUntil('the receiver holds the attempt', () => answer !== undefined && services.stats().partner.inFlight === 1)
  const closing = services.close()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(outcome, 'pending', 'close() does not settle a delivery whose attempt is in flight')
  answer?.() // the receiver answers 200 after close() was called
  await closing
  const delivered = await waiting
  t.same(delivered.attempts.map((a) => a.status), [200])
  t.match(services.stats().partner.webhooks, { queued: 0, delivered: 1, deadLettered: 0 })
  t.same(services.webhooks.pending(), [])
})

/** A sender on a fake registry: one service, `partner`, whose endpoint answers `status`; no network. */
function fakeSender (store: DeadLetterStore, status: number): { sender: WebhookSender, requests: () => number } {
  let requests = 0
  const log = { info () {}, warn () {}, error () {}, debug () {}, trace () {}, fatal () {}, child () { return log } }
  const service = { name: 'partner', log, options: { webhook: { scheme: 'standard', secrets: [secret], schedule: [0], path: '/hooks', header: 'x-webhook-signature' } } }
  const registry = {
    get: () => service,
    client: () => ({ request: async () => { requests++; return { status, headers: {}, dump: async () => {} } } })
  } as unknown as SenderRegistry
  return { sender: new WebhookSender(registry, [], store), requests: () => requests }
}

t.test('replaying a dead letter to an endpoint that refuses again keeps it, with an asynchronous store', async (t) => {
  const memory = new MemoryDeadLetterStore()
  let adds = 0
  // Calls that overlap as a remote store's would: remove answers later than add.
  const store: DeadLetterStore = {
    add: async (letter: DeadLetter) => { adds++; await memory.add(letter) },
    list: async (service) => await memory.list(service),
    get: async (id) => await memory.get(id),
    remove: async (id) => { await new Promise((resolve) => setTimeout(resolve, 30)); return await memory.remove(id) }
  }
  const { sender, requests } = fakeSender(store, 422)
  t.teardown(() => sender.close())
  await t.rejects(sender.sendAndWait('partner', { type: 'x' }, { id: 'msg_refused' }), { reason: 'rejected', message: /refused/ })
  t.equal(adds, 1)
  await sender.replay('msg_refused')
  await waitUntil('the replay was refused and dead-lettered again', () => adds === 2)
  await new Promise((resolve) => setTimeout(resolve, 60)) // any remove still under way lands
  t.equal(requests(), 2)
  t.match(await sender.deadLetters(), [{ id: 'msg_refused', reason: 'rejected', attempts: [{ status: 422 }] }], 'the letter of the refused replay is kept')
})

t.test('a replay that cannot be queued leaves the letter in place', async (t) => {
  const store = new MemoryDeadLetterStore()
  const { sender } = fakeSender(store, 422)
  await t.rejects(sender.sendAndWait('partner', { type: 'x' }, { id: 'msg_kept' }), { reason: 'rejected', message: /refused/ })
  sender.close()
  await t.rejects(sender.replay('msg_kept'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
  t.match(await sender.deadLetters(), [{ id: 'msg_kept' }])
  await t.rejects(sender.replay('msg_none'), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /no dead letter/ })
})

t.test('two concurrent replays of one letter queue it once', async (t) => {
  const memory = new MemoryDeadLetterStore()
  const store: DeadLetterStore = {
    add: async (letter) => { await memory.add(letter) },
    list: async (service) => await memory.list(service),
    get: async (id) => await memory.get(id),
    remove: async (id) => { await new Promise((resolve) => setImmediate(resolve)); return await memory.remove(id) }
  }
  const { sender } = fakeSender(store, 422)
  t.teardown(() => sender.close())
  await t.rejects(sender.sendAndWait('partner', { type: 'x' }, { id: 'msg_twice' }), { reason: 'rejected', message: /refused/ })
  const [a, b] = await Promise.allSettled([sender.replay('msg_twice'), sender.replay('msg_twice')])
  t.same([a.status, b.status].sort(), ['fulfilled', 'rejected'])
  t.match(a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST' })
})

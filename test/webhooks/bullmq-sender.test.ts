import t, { type Test } from 'tap'
import Redis from 'ioredis'
import Fastify from 'fastify'
import httpServices, { createHttpServices, WebhookDeliveryError, type HttpServices, type WebhookOptions } from '../../index'
import { jobIdOf, loadBullmq, webhookIdOf } from '../../lib/webhooks/bullmq-queue'
import { interopBinary, startRedis, type RedisServer } from '../helpers/interop'
import { closedPort } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'
import { startReceiver } from '../helpers/webhook-receiver'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const secret = 'whsec_' + Buffer.from('the sender and receiver share this').toString('base64')
/** Longest wait for one delivery to settle: generous for a loaded CI machine, far under tap's timeout. */
const kSettle = 15_000

let server: RedisServer | undefined
let prefixes = 0

/** One redis-server for the file; each test writes under its own key prefix. */
async function redisUrl (): Promise<string> {
  server ??= await startRedis(t, redisBinary.path as string)
  return server.url
}

function ownClient (t: Test, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

async function sender (t: Test, url: string, webhook: Partial<WebhookOptions> = {}, keyPrefix = `t${++prefixes}:`, open = true): Promise<HttpServices> {
  const services = createHttpServices({
    closeTimeout: 2000,
    redis: { url: await redisUrl(), keyPrefix, timeout: 1000 },
    services: { partner: { baseUrl: url, webhook: { secret, path: '/hooks', schedule: [0, 1, 1], ...webhook } } }
  })
  if (open) await services.open()
  t.teardown(async () => { await services.close() })
  return services
}

t.test('bullmq missing: InvalidOptionsError naming the webhook service key', async (t) => {
  t.throws(() => loadBullmq('services.partner.webhook', 'bullmq-not-installed-here'),
    { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', message: /^services\.partner\.webhook: .*needs the bullmq-not-installed-here package/ })
})

t.test('job ids: msg_ ids as they are, any other id encoded so BullMQ accepts it, one-to-one', async (t) => {
  t.equal(jobIdOf('msg_2ZxKa-_9'), 'msg_2ZxKa-_9')
  for (const id of ['12345', 'order:42:x', 'a:b:c', 'failed', 'wh-abc', 'msg_a:b', 'msg_', 'é ü']) {
    const jobId = jobIdOf(id)
    t.not(jobId, id, `${id} is encoded`)
    t.match(jobId, /^wh-[A-Za-z0-9_-]+$/, 'no ":", not an integer, no BullMQ key name')
    t.equal(webhookIdOf(jobId), id, 'and decoded back')
  }
})

t.test('on Redis', { skip: redisBinary.skip }, async (t) => {
  t.test('ids BullMQ refuses as job ids (all digits, colons) are dead-lettered, replayed and delivered under the id given', async (t) => {
    const receiver = await startReceiver(t, secret, [422, 422])
    const services = await sender(t, receiver.url)
    for (const id of ['12345', 'order:42:x']) {
      const err = await within('the rejection', services.webhooks.sendAndWait('partner', { type: 'x', data: { id } }, { id }).then(() => undefined, (e: unknown) => e), kSettle)
      t.ok(err instanceof WebhookDeliveryError, `${id}: a delivery error, not BullMQ's`)
      t.match(err, { reason: 'rejected', webhookId: id })
      await t.rejects(services.webhooks.send('partner', { type: 'x' }, { id }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /dead letter: replay/ }, `${id}: recognized as a dead letter`)
    }
    t.same((await services.webhooks.deadLetters('partner')).map((l) => [l.id, l.reason]), [['12345', 'rejected'], ['order:42:x', 'rejected']])
    for (const id of ['12345', 'order:42:x']) t.same(await services.webhooks.replay(id), { id, service: 'partner' })
    await waitUntil('both replays are delivered', () => receiver.events.length === 2, kSettle)
    t.same(receiver.seen.map((s) => s.id), ['12345', 'order:42:x', '12345', 'order:42:x'], 'the receiver saw the exact webhook-ids')
    t.same(receiver.events.map((e) => e.id).sort(), ['12345', 'order:42:x'])
    t.same(await services.webhooks.deadLetters(), [])
    const again = await within('the wait on a delivered id', services.webhooks.sendAndWait('partner', { type: 'x' }, { id: '12345' }), kSettle)
    t.same(again.id, '12345')
    t.same(again.attempts.map((a) => a.status), [200], 'the replay\'s attempt: the same delivery, not a new one')
    t.equal(receiver.seen.length, 4, 'nothing sent again')
  })

  t.test('delivers through 503, 503, 200 with one webhook-id and a fresh signature each time', async (t) => {
    const receiver = await startReceiver(t, secret, [503, 503])
    const services = await sender(t, receiver.url, { schedule: [0, 1, 1100] })
    const delivered = await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'invoice.paid', data: { id: 'inv_1' } }), kSettle)
    t.same(delivered.attempts.map((a) => a.status), [503, 503, 200])
    t.same(delivered.attempts.map((a) => a.attempt), [1, 2, 3])
    t.same(new Set(receiver.seen.map((s) => s.id)), new Set([delivered.id]), 'every attempt carried the same webhook-id')
    t.not(receiver.seen[2].signature, receiver.seen[0].signature, 'signed afresh: the attempt 1.1 s later has a new signature')
    t.ok(Number(receiver.seen[2].timestamp) > Number(receiver.seen[0].timestamp), 'a fresh timestamp after the 1.1 s wait')
    t.match(receiver.events, [{ id: delivered.id, event: { type: 'invoice.paid', data: { id: 'inv_1' } } }])
    t.match(services.stats().partner.webhooks, { queued: 0, delivered: 1, deadLettered: 0, attempts: 3, disabled: false })
  })

  t.test('send resolves once the job is added; the same id sent again is one delivery', async (t) => {
    const receiver = await startReceiver(t, secret, [503])
    const services = await sender(t, receiver.url, { schedule: [0, 300] })
    const first = await services.webhooks.send('partner', { type: 'a.b' }, { id: 'msg_once' })
    t.same(first, { id: 'msg_once', service: 'partner' })
    t.same(await services.webhooks.send('partner', { type: 'a.b' }, { id: 'msg_once' }), first, 'accepted again, not queued twice')
    await waitUntil('the event is delivered', () => receiver.events.length === 1, kSettle)
    t.same(await services.webhooks.send('partner', { type: 'a.b' }, { id: 'msg_once' }), first, 'and once delivered')
    const delivered = await within('the wait on a delivered id', services.webhooks.sendAndWait('partner', { type: 'a.b' }, { id: 'msg_once' }), kSettle)
    t.same(delivered.attempts.map((a) => a.status), [503, 200])
    t.same(receiver.seen.map((s) => s.id), ['msg_once', 'msg_once'], 'one failed attempt and one delivery, nothing more')
    t.same(services.webhooks.pending(), [], 'nothing pending in the process: the queue is in Redis')
  })

  t.test('a 4xx stops the schedule: sendAndWait rejects and the failed job is a dead letter', async (t) => {
    const receiver = await startReceiver(t, secret, [422])
    const services = await sender(t, receiver.url)
    const err = await within('the rejection', services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e), kSettle)
    t.ok(err instanceof WebhookDeliveryError)
    t.match(err, { reason: 'rejected', service: 'partner', attempts: 1, outcomes: [{ attempt: 1, status: 422 }] })
    t.equal(receiver.seen.length, 1, 'no retry')
    t.match(await services.webhooks.deadLetters('partner'), [{ reason: 'rejected', path: '/hooks', type: 'x', attempts: [{ status: 422 }] }])
    t.same(await services.webhooks.deadLetters('other'), [])
    t.match(services.stats().partner.webhooks, { queued: 0, delivered: 0, deadLettered: 1, attempts: 1 })
    await t.rejects(services.webhooks.send('partner', { type: 'x' }, { id: (err as WebhookDeliveryError).webhookId }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /dead letter: replay/ })
  })

  t.test('a 410 disables the endpoint in Redis for every instance until enable()', async (t) => {
    const receiver = await startReceiver(t, secret, [410])
    const keyPrefix = `t${++prefixes}:`
    const a = await sender(t, receiver.url, {}, keyPrefix)
    const b = await sender(t, receiver.url, {}, keyPrefix)
    await t.rejects(within('the 410', a.webhooks.sendAndWait('partner', { type: 'x' }), kSettle), { reason: 'gone', message: /410 Gone/ })
    const client = ownClient(t, await redisUrl())
    t.equal(await client.get(`${keyPrefix}webhook-disabled:partner`), '1')
    await t.rejects(b.webhooks.send('partner', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_WEBHOOK_DELIVERY', reason: 'disabled', message: /disabled/ }, 'the other instance fails fast too')
    t.ok(b.webhooks.isDisabled('partner'))
    t.equal((b.stats().partner.webhooks as { disabled: boolean }).disabled, true)
    t.equal(receiver.seen.length, 1)
    await b.webhooks.enable('partner')
    t.equal(await client.get(`${keyPrefix}webhook-disabled:partner`), null)
    const delivered = await within('the delivery', a.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    t.same(delivered.attempts.map((s) => s.status), [200])
    t.notOk(a.webhooks.isDisabled('partner'))
  })

  t.test('Retry-After lengthens the next wait within the schedule', async (t) => {
    const receiver = await startReceiver(t, secret, [503], '1')
    const services = await sender(t, receiver.url, { schedule: [0, 1, 5000] })
    const delivered = await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    t.same(delivered.attempts.map((a) => a.status), [503, 200])
    // Scheduled 1 ms; the receiver asked for 1 s (under the 5 s bound), so the second attempt came no sooner.
    t.ok(receiver.seen[1].at - receiver.seen[0].at >= 950, `waited ${receiver.seen[1].at - receiver.seen[0].at} ms`)
  })

  t.test('an exhausted schedule is a dead letter with every attempt; replay delivers it under its id', async (t) => {
    const receiver = await startReceiver(t, secret, [503, 500, 429])
    const services = await sender(t, receiver.url)
    const err = await within('the dead letter', services.webhooks.sendAndWait('partner', { type: 'order.shipped', data: { n: 1 } }).then(() => undefined, (e: unknown) => e), kSettle) as WebhookDeliveryError
    t.match(err, { reason: 'exhausted', attempts: 3 })
    t.same(err.outcomes.map((o) => o.status), [503, 500, 429])
    const [letter] = await services.webhooks.deadLetters()
    t.match(letter, { id: err.webhookId, service: 'partner', path: '/hooks', type: 'order.shipped', reason: 'exhausted' })
    t.same(letter.attempts.map((a) => a.attempt), [1, 2, 3])
    t.ok(letter.failedAt >= letter.createdAt)
    t.match(JSON.parse(letter.body), { type: 'order.shipped', data: { n: 1 } })
    const replayed = await services.webhooks.replay(letter.id)
    t.same(replayed, { id: letter.id, service: 'partner' })
    await waitUntil('the replay is delivered', () => receiver.events.length === 1, kSettle)
    t.equal(receiver.seen[3].id, letter.id, 'the replay kept the id')
    t.same(await services.webhooks.deadLetters(), [])
    await t.rejects(services.webhooks.replay(letter.id), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /no dead letter/ })
    await t.rejects(services.webhooks.replay('msg_none'), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /no dead letter/ })
  })

  t.test('two concurrent replays of one letter queue it once', async (t) => {
    const receiver = await startReceiver(t, secret, [422])
    const services = await sender(t, receiver.url)
    await t.rejects(within('the rejection', services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_twice' }), kSettle), { reason: 'rejected', message: /refused/ })
    const [a, b] = await Promise.allSettled([services.webhooks.replay('msg_twice'), services.webhooks.replay('msg_twice')])
    t.same([a.status, b.status].sort(), ['fulfilled', 'rejected'])
    await waitUntil('the replay is delivered', () => receiver.events.length === 1, kSettle)
    t.equal(receiver.seen.length, 2)
  })

  t.test('network errors are retried on the schedule', async (t) => {
    const services = await sender(t, `http://127.0.0.1:${await closedPort()}`, { schedule: [0, 1] })
    const err = await within('the dead letter', services.webhooks.sendAndWait('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e), kSettle) as WebhookDeliveryError
    t.match(err, { reason: 'exhausted', attempts: 2 })
    t.same(err.outcomes.map((o) => o.error), ['HTTP_SERVICES_ERR_CONNECTION', 'HTTP_SERVICES_ERR_CONNECTION'])
  })

  t.test('two registries on one Redis: every event is delivered once', async (t) => {
    const receiver = await startReceiver(t, secret, [503, 503])
    const keyPrefix = `t${++prefixes}:`
    const a = await sender(t, receiver.url, {}, keyPrefix)
    const b = await sender(t, receiver.url, {}, keyPrefix)
    const ids = []
    for (let i = 0; i < 10; i++) ids.push((await (i % 2 === 0 ? a : b).webhooks.send('partner', { type: 'n', data: { i } })).id)
    await waitUntil('every event is delivered', () => receiver.events.length >= ids.length, kSettle)
    const client = ownClient(t, await redisUrl())
    const busy = async (): Promise<number> => (await client.zcard(`${keyPrefix.slice(0, -1)}:webhooks:delayed`)) + (await client.llen(`${keyPrefix.slice(0, -1)}:webhooks:active`)) + (await client.llen(`${keyPrefix.slice(0, -1)}:webhooks:wait`))
    await within('the queue is idle', (async () => { while (await busy() > 0) await new Promise((resolve) => setTimeout(resolve, 20)) })(), kSettle)
    const delivered = receiver.seen.filter((s) => s.status === 200)
    t.same(delivered.map((s) => s.id).sort(), [...ids].sort(), 'each id answered 200 exactly once')
    t.equal(receiver.seen.length, ids.length + 2, 'the two 503s retried, nothing else sent twice')
    const stats = [a, b].map((s) => s.stats().partner.webhooks as { delivered: number, attempts: number })
    t.equal(stats[0].delivered + stats[1].delivered, ids.length)
    t.equal(stats[0].attempts + stats[1].attempts, ids.length + 2)
  })

  t.test('sendAndWait resolves when another instance did the delivering', async (t) => {
    const receiver = await startReceiver(t, secret)
    const keyPrefix = `t${++prefixes}:`
    const idle = await sender(t, receiver.url, {}, keyPrefix, false) // never opened: no worker of its own
    const worker = await sender(t, receiver.url, {}, keyPrefix)
    const delivered = await within('the delivery by the other instance', idle.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    t.same(delivered.attempts.map((a) => a.status), [200])
    t.match(worker.stats().partner.webhooks, { delivered: 1, attempts: 1 })
    t.match(idle.stats().partner.webhooks, { queued: 0, delivered: 0, attempts: 0 })
  })

  t.test('close rejects waiting callers (closed), leaves the event in Redis, and a send after it is refused', async (t) => {
    const receiver = await startReceiver(t, secret, [503])
    const keyPrefix = `t${++prefixes}:`
    const services = await sender(t, receiver.url, { schedule: [0, 60_000] }, keyPrefix)
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_kept' }).then(() => undefined, (e: unknown) => e)
    await waitUntil('the first attempt failed', () => receiver.seen.length === 1, kSettle)
    const client = ownClient(t, await redisUrl())
    await within('the retry is scheduled', (async () => { while (await client.zscore(`${keyPrefix}webhooks:delayed`, 'msg_kept') === null) await new Promise((resolve) => setTimeout(resolve, 20)) })(), kSettle)
    await services.close()
    t.match(await within('the rejection', waiting), { reason: 'closed', statusCode: 503 })
    await t.rejects(services.webhooks.send('partner', { type: 'x' }), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
    await t.rejects(services.webhooks.replay('msg_kept'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
    t.match(JSON.parse(await client.hget(`${keyPrefix}webhooks:msg_kept`, 'data') ?? '{}'), { id: 'msg_kept', attempts: [{ attempt: 1, status: 503 }] }, 'the job and its first outcome stay in Redis')
    t.equal(await client.hget(`${keyPrefix}webhooks:msg_kept`, 'atm'), '1', 'BullMQ counted the attempt (its attemptsMade field)')
  })

  t.test('no secret in Redis: the job holds the body, signed at each attempt from the config', async (t) => {
    const receiver = await startReceiver(t, secret, [422])
    const keyPrefix = `t${++prefixes}:`
    const services = await sender(t, receiver.url, {}, keyPrefix)
    await t.rejects(within('the rejection', services.webhooks.sendAndWait('partner', { type: 'x' }), kSettle), { reason: 'rejected', message: /refused/ })
    const client = ownClient(t, await redisUrl())
    const keys = await client.keys(`${keyPrefix}*`)
    t.ok(keys.length > 0)
    for (const key of keys) {
      const type = await client.type(key)
      const dump = type === 'hash' ? JSON.stringify(await client.hgetall(key)) : type === 'string' ? String(await client.get(key)) : ''
      t.notOk(dump.includes(secret.slice(6)) || dump.includes(receiver.seen[0].signature ?? '\0'), `${key} holds neither the secret nor a signature`)
    }
  })
  t.test('an event queued for an endpoint a 410 then disabled ends as a disabled dead letter at its turn', async (t) => {
    const receiver = await startReceiver(t, secret, [503, 410])
    const services = await sender(t, receiver.url, { schedule: [0, 500] })
    await services.webhooks.send('partner', { type: 'x' }, { id: 'msg_waits' })
    await waitUntil('its first attempt failed', () => receiver.seen.length === 1, kSettle)
    await t.rejects(within('the 410', services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_gone' }), kSettle), { reason: 'gone', message: /410/ })
    await within('the waiting event ends', (async () => {
      while (!(await services.webhooks.deadLetters('partner')).some((l) => l.id === 'msg_waits')) await new Promise((resolve) => setTimeout(resolve, 50))
    })(), kSettle)
    const letters = await services.webhooks.deadLetters('partner')
    t.match(letters.find((l) => l.id === 'msg_waits'), { reason: 'disabled', attempts: [{ attempt: 1, status: 503 }] })
    t.equal(receiver.seen.length, 2, 'no attempt to a disabled endpoint')
    await t.rejects(services.webhooks.replay('msg_waits'), { reason: 'disabled', message: /disabled/ }, 'replay refused while disabled')
  })

  t.test('a job for a service this instance does not know is left delayed for one that does', async (t) => {
    const receiver = await startReceiver(t, secret)
    const keyPrefix = `t${++prefixes}:`
    const knows = await sender(t, receiver.url, {}, keyPrefix, false)
    const other = createHttpServices({ redis: { url: await redisUrl(), keyPrefix }, services: { elsewhere: { baseUrl: receiver.url, webhook: { secret } } } })
    await other.open()
    t.teardown(async () => { await other.close() })
    await knows.webhooks.send('partner', { type: 'x' }, { id: 'msg_foreign' })
    const client = ownClient(t, await redisUrl())
    let score: string | null = null
    await within('the other instance puts it back', (async () => {
      while ((score = await client.zscore(`${keyPrefix}webhooks:delayed`, 'msg_foreign')) === null || Number(score) / 4096 < Date.now() + 1000) await new Promise((resolve) => setTimeout(resolve, 20))
    })(), kSettle)
    t.ok(Number(score) / 4096 > Date.now() + 30_000, 'delayed by about a minute')
    t.equal(await client.hget(`${keyPrefix}webhooks:msg_foreign`, 'atm'), null, 'no attempt counted')
    t.equal(receiver.seen.length, 0)
  })

  t.test('sendAndWait on a job removed from Redis rejects instead of waiting forever', async (t) => {
    const receiver = await startReceiver(t, secret)
    const keyPrefix = `t${++prefixes}:`
    const services = await sender(t, receiver.url, { schedule: [60_000] }, keyPrefix)
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_removed' }).then(() => undefined, (e: unknown) => e)
    const { Queue } = await import('bullmq')
    const queue = new Queue('webhooks', { connection: { host: '127.0.0.1', port: server?.port }, prefix: keyPrefix.slice(0, -1) })
    t.teardown(async () => { await queue.close() })
    await within('the job is there', (async () => { while (await queue.getJob('msg_removed') === undefined) await new Promise((resolve) => setTimeout(resolve, 20)) })(), kSettle)
    await queue.remove('msg_removed')
    t.match(await within('the rejection', waiting, kSettle), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /removed from the queue/ })
  })
  t.test('sendAndWait on a job removed between reading it and reading its state: removed, not a dead letter', async (t) => {
    const receiver = await startReceiver(t, secret)
    const services = await sender(t, receiver.url, { schedule: [60_000] })
    // The watcher's own queue: its first read of the job returns it, and the job is removed before the state is read.
    const queue = (services.webhooks as unknown as { queue: { ensure: () => { getJob: (id: string) => Promise<unknown>, remove: (id: string) => Promise<number> } } }).queue.ensure()
    const getJob = queue.getJob.bind(queue)
    let removed = 0
    queue.getJob = async (id) => {
      const job = await getJob(id)
      if (job !== undefined && id === 'msg_raced') removed += await queue.remove(id)
      return job
    }
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_raced' }).then(() => undefined, (e: unknown) => e)
    const err = await within('the rejection', waiting, kSettle)
    t.equal(removed, 1, 'removed between the two reads')
    t.notOk(err instanceof WebhookDeliveryError, 'not told it was dead-lettered')
    t.match(err, { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /removed from the queue/ })
  })
  t.test('with an ioredis client of yours: BullMQ gets duplicates of it, and yours stays open after close', async (t) => {
    const receiver = await startReceiver(t, secret, [503])
    const client = ownClient(t, await redisUrl())
    const services = createHttpServices({ redis: { client, keyPrefix: `t${++prefixes}:` }, services: { partner: { baseUrl: receiver.url, webhook: { secret, path: '/hooks', schedule: [0, 1] } } } })
    await services.open()
    const delivered = await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    t.same(delivered.attempts.map((a) => a.status), [503, 200])
    await services.close()
    t.equal(client.status, 'ready', 'the given client is not closed')
    t.equal(await client.ping(), 'PONG')
  })
  t.test('through the Fastify plugin: the worker starts on ready and stops on close', async (t) => {
    const receiver = await startReceiver(t, secret)
    const app = Fastify()
    await app.register(httpServices, { redis: { url: await redisUrl(), keyPrefix: `t${++prefixes}:` }, services: { partner: { baseUrl: receiver.url, webhook: { secret, path: '/hooks' } } } })
    app.post('/orders', async () => await app.httpServices.webhooks.sendAndWait('partner', { type: 'order.created' }))
    t.teardown(async () => { await app.close() })
    await app.ready()
    const res = await within('the route', app.inject({ method: 'POST', url: '/orders' }), kSettle)
    t.equal(res.statusCode, 200)
    t.match(res.json(), { service: 'partner', attempts: [{ attempt: 1, status: 200 }] })
    t.equal(receiver.events.length, 1)
  })
})

import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHttpServices, type HttpServices } from '../../index'
import { interopBinary, startRedis } from '../helpers/interop'
import { waitUntil, within } from '../helpers/wait'
import { heldReceiver, startReceiver } from '../helpers/webhook-receiver'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const secret = 'whsec_' + Buffer.from('the sender and receiver share this').toString('base64')
const kSettle = 15_000

function registry (t: Test, redisUrl: string, baseUrl: string, keyPrefix: string, closeTimeout = 2000): HttpServices {
  const services = createHttpServices({
    closeTimeout,
    redis: { url: redisUrl, keyPrefix, timeout: 1000 },
    services: { partner: { baseUrl, webhook: { secret, path: '/hooks', schedule: [0, 60_000] } } }
  })
  t.teardown(async () => { await services.close() })
  return services
}

function ownClient (t: Test, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  return client
}

t.test('closing with Redis', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)

  t.test('an attempt in flight at close() that the receiver then accepts is delivered (and sendAndWait resolves)', async (t) => {
    const receiver = await heldReceiver(t)
    const services = registry(t, redis.url, receiver.url, 'inflight:')
    await services.open()
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_inflight' }).then(() => 'delivered', (e: { reason?: string }) => e.reason)
    await waitUntil('the receiver holds the attempt', () => receiver.held() === 1, kSettle)
    const closing = services.close()
    await sleep(50)
    receiver.answer(200) // answered after close() began: the worker waited for it
    await within('the close', closing, kSettle)
    t.equal(await waiting, 'delivered', 'the caller learns the delivery the worker finished while closing')
    const client = ownClient(t, redis.url)
    t.not(await client.zscore('inflight:webhooks:completed', 'msg_inflight'), null, 'the job completed before the worker stopped')
    t.match(services.stats().partner.webhooks, { delivered: 1, attempts: 1 })
  })

  t.test('an attempt the close cuts off is left in Redis, uncounted, for the next instance', async (t) => {
    const receiver = await heldReceiver(t)
    const first = registry(t, redis.url, receiver.url, 'cut:', 100)
    await first.open()
    await first.webhooks.send('partner', { type: 'x' }, { id: 'msg_cut' })
    await waitUntil('the receiver holds the attempt', () => receiver.held() === 1, kSettle)
    await within('the close', first.close(), kSettle)
    const client = ownClient(t, redis.url)
    t.not(await client.zscore('cut:webhooks:delayed', 'msg_cut'), null, 'back among the delayed jobs')
    t.equal(await client.hget('cut:webhooks:msg_cut', 'atm'), null, 'not counted as an attempt')
    const delivered = await startReceiver(t, secret)
    const second = registry(t, redis.url, delivered.url, 'cut:')
    await second.open()
    await waitUntil('the next instance delivers it', () => delivered.events.length === 1, kSettle)
    t.equal(delivered.seen[0].id, 'msg_cut')
  })

  t.test('Redis going away: send rejects (503) within a bound, close still ends, nothing crashes', async (t) => {
    const own = await startRedis(t, redisBinary.path as string)
    const receiver = await startReceiver(t, secret)
    const services = registry(t, own.url, receiver.url, 'down:')
    await services.open()
    await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    await own.stop()
    const err = await within('the refusal', services.webhooks.send('partner', { type: 'x' }).then(() => undefined, (e: unknown) => e), kSettle)
    t.match(err, { code: 'HTTP_SERVICES_ERR', statusCode: 503, message: /Redis did not answer/ })
    await within('the close', services.close(), kSettle)
  })

  t.test('a send refused (503) while Redis is away is not added when Redis comes back: a retry with its id is one delivery', async (t) => {
    const own = await startRedis(t, redisBinary.path as string)
    const receiver = await startReceiver(t, secret)
    const services = registry(t, own.url, receiver.url, 'outage:')
    await services.open()
    await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_before' }), kSettle)
    await own.stop()
    const started = Date.now()
    const refused = await within('the refusal', services.webhooks.send('partner', { type: 'x' }, { id: 'msg_outage' }).then(() => undefined, (e: unknown) => e), kSettle)
    t.match(refused, { statusCode: 503, message: /Redis did not answer/ })
    t.ok(Date.now() - started < 2500, `refused at once (${Date.now() - started} ms), nothing left waiting for Redis`)
    const back = await startRedis(t, redisBinary.path as string, own.port)
    // The registry reconnects: a send of another id gets through once its connection is up again.
    await within('a send after the outage', (async () => {
      while (!await services.webhooks.send('partner', { type: 'x' }, { id: 'msg_after' }).then(() => true, () => false)) await sleep(50)
    })(), kSettle)
    await waitUntil('the later event is delivered', () => receiver.events.length === 2, kSettle)
    await sleep(300)
    const client = ownClient(t, back.url)
    t.equal(await client.exists('outage:webhooks:msg_outage'), 0, 'the refused send was not added behind the caller\'s back')
    t.same(receiver.seen.map((s) => s.id), ['msg_before', 'msg_after'])
    await within('the retry with the same id', services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_outage' }), kSettle)
    t.same(receiver.seen.map((s) => s.id), ['msg_before', 'msg_after', 'msg_outage'], 'delivered once')
    await within('the close', services.close(), kSettle)
  })

  t.test('Redis back before the connections retried: those still reconnecting at close() are closed once they reconnect', async (t) => {
    const own = await startRedis(t, redisBinary.path as string)
    const receiver = await startReceiver(t, secret)
    // A client of the app's with a slow reconnection: BullMQ's connections are duplicates of it and keep its pace.
    const client = new Redis(own.url, { maxRetriesPerRequest: 1, retryStrategy: () => 1500 })
    client.on('error', () => {})
    t.teardown(() => { client.disconnect() })
    const services = createHttpServices({
      closeTimeout: 1000,
      redis: { client, keyPrefix: 'back:', timeout: 1000 },
      services: { partner: { baseUrl: receiver.url, webhook: { secret, path: '/hooks', schedule: [0, 60_000] } } }
    })
    t.teardown(async () => { await services.close() })
    await services.open()
    await within('the delivery', services.webhooks.sendAndWait('partner', { type: 'x' }), kSettle)
    await own.stop()
    const back = await startRedis(t, redisBinary.path as string, own.port)
    await within('the close', services.close(), kSettle)
    const look = ownClient(t, back.url)
    // Past every retry (1.5 s): the app's own client is back, and nothing of the closed registry.
    await sleep(3000)
    const clients = String(await look.client('LIST')).trim().split('\n')
    t.equal(clients.length, 2, `only the test's inspector and the app's own client are connected: ${clients.join(' | ')}`)
  })

  t.test('close() right after sendAndWait(): the caller is told closed instead of waiting forever', async (t) => {
    const receiver = await startReceiver(t, secret)
    const services = registry(t, redis.url, receiver.url, 'race:') // never opened: the close has no worker to wait for
    await services.webhooks.send('partner', { type: 'x' }, { id: 'msg_first' }) // connected: close() finds Redis up
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_race' }).then(() => 'delivered', (e: { reason?: string }) => e.reason)
    const closing = services.close()
    t.equal(await within('the caller settles', waiting, kSettle), 'closed')
    await within('the close', closing, kSettle)
    t.equal(receiver.seen.length, 0, 'nothing attempted: the registry never opened')
  })

  t.test('close() that ends while sendAndWait() is accepting: the caller is told closed, no poll is left behind', async (t) => {
    const receiver = await startReceiver(t, secret)
    const services = registry(t, redis.url, receiver.url, 'race2:')
    // The job is added, then the whole close() runs before sendAndWait goes on: what a close during accept() is.
    const queue = (services.webhooks as unknown as { queue: { accept: (p: unknown) => Promise<void> } }).queue
    const accept = queue.accept.bind(queue)
    let closing: Promise<void> | undefined
    queue.accept = async (p) => {
      await accept(p)
      closing = services.close()
      await closing
    }
    const waiting = services.webhooks.sendAndWait('partner', { type: 'x' }, { id: 'msg_race2' }).then(() => 'delivered', (e: { reason?: string }) => e.reason)
    t.equal(await within('the caller settles', waiting, kSettle), 'closed')
    await within('the close', closing as Promise<void>, kSettle)
    const client = ownClient(t, redis.url)
    t.equal(await client.exists('race2:webhooks:msg_race2'), 1, 'the event stays in Redis for the next instance')
  })
})

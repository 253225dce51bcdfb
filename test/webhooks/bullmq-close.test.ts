import t, { type Test } from 'tap'
import Redis from 'ioredis'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHttpServices, type HttpServices } from '../../index'
import { interopBinary, startRedis } from '../helpers/interop'
import { waitUntil, within } from '../helpers/wait'
import { startReceiver } from '../helpers/webhook-receiver'

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

/** A receiver on 127.0.0.1 whose handler holds each request until the test answers it. */
async function heldReceiver (t: Test): Promise<{ url: string, held: () => number, answer: (status: number) => void }> {
  const pending: Array<(status: number) => void> = []
  const app = Fastify()
  app.post('/hooks', async (_request, reply) => {
    const status = await new Promise<number>((resolve) => { pending.push(resolve) })
    return await reply.code(status).send({})
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    for (const answer of pending.splice(0)) answer(200)
    await app.close()
  })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, held: () => pending.length, answer: (status) => { pending.shift()?.(status) } }
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
})

import t from 'tap'
import Redis from 'ioredis'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startChildApp } from '../helpers/child-app'
import { interopBinary, startRedis } from '../helpers/interop'
import { waitUntil, within } from '../helpers/wait'
import { startReceiver } from '../helpers/webhook-receiver'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const secret = 'whsec_' + Buffer.from('the sender and receiver share this').toString('base64')
const fixture = join(__dirname, 'fixtures', 'bullmq-sender-app.ts')
/** A generous bound for a loaded 2-core CI machine. */
const kSettle = 20_000

t.test('an event waiting for its retry survives the sending process being killed: another one delivers it exactly once', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const receiver = await startReceiver(t, secret, [503])
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(async () => { await client.quit().catch(() => { client.disconnect() }) })
  const env = { REDIS_URL: redis.url, KEY_PREFIX: 'restart:', RECEIVER_URL: receiver.url, SECRET: secret }
  const id = 'msg_survives_a_restart'

  const first = await startChildApp(t, fixture, { ...env, EVENT_ID: id })
  await waitUntil('the first attempt reached the receiver', () => receiver.seen.length === 1, kSettle)
  // Killed while the event waits for its second attempt (3 s later: room for a loaded machine): a delayed job in Redis, held by nobody.
  await within('the retry is scheduled', (async () => {
    while (await client.zscore('restart:webhooks:delayed', id) === null) await sleep(10)
  })(), kSettle)
  first.child.kill('SIGKILL')
  await within('the first app is gone', first.exited)
  t.equal(receiver.seen.length, 1, 'only the failed attempt was made by the killed app')

  const second = await startChildApp(t, fixture, env)
  await waitUntil('the event is delivered', () => receiver.seen.some((s) => s.status === 200), kSettle)
  await within('the job is completed in Redis', (async () => {
    while (await client.zscore('restart:webhooks:completed', id) === null) await sleep(10)
  })(), kSettle)
  const data = JSON.parse(await client.hget(`restart:webhooks:${id}`, 'data') ?? '{}') as { attempts: Array<{ status?: number }> }
  t.same(data.attempts.map((a) => a.status), [503, 200], 'both outcomes kept on the job, across the two processes')
  const deliveries = receiver.seen.filter((s) => s.id === id && s.status === 200)
  t.equal(deliveries.length, 1, 'delivered exactly once')
  t.equal(receiver.handled(id), 1, 'the receiver ran its handler once')
  t.equal(receiver.seen.length, 2)

  second.child.kill('SIGTERM')
  await within('the second app closed and exited by itself', second.exited, kSettle)
  t.equal(second.child.exitCode, 0, `the second app exited 0 after closing (its output: ${second.output().trim()})`)
})

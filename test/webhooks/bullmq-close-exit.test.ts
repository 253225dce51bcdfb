import t from 'tap'
import Redis from 'ioredis'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startChildApp } from '../helpers/child-app'
import { interopBinary, startRedis } from '../helpers/interop'
import { waitUntil, within } from '../helpers/wait'
import { heldReceiver } from '../helpers/webhook-receiver'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const secret = 'whsec_' + Buffer.from('the sender and receiver share this').toString('base64')
const fixture = join(__dirname, 'fixtures', 'bullmq-sender-app.ts')
/** A generous bound for a loaded 2-core CI machine; the close itself is bounded by a few seconds. */
const kSettle = 20_000

// In a child process: only a process that exits by itself shows that the close left nothing running (BullMQ's lock
// renewal and stalled-job timers, a connection that keeps reconnecting).
t.test('Redis going away while close() waits for an attempt: the close ends and the process exits by itself', { skip: redisBinary.skip }, async (t) => {
  const redis = await startRedis(t, redisBinary.path as string)
  const receiver = await heldReceiver(t)
  const app = await startChildApp(t, fixture, { REDIS_URL: redis.url, KEY_PREFIX: 'exit:', RECEIVER_URL: receiver.url, SECRET: secret, EVENT_ID: 'msg_exit', SCHEDULE: '[0, 60000]', EXIT: 'natural' })
  await waitUntil('the receiver holds the attempt', () => receiver.held() === 1, kSettle)
  const look = new Redis(redis.url, { maxRetriesPerRequest: 0, retryStrategy: () => null })
  look.on('error', () => {})
  t.teardown(() => { look.disconnect() })
  const pings = async (): Promise<number> => Number(/cmdstat_ping:calls=(\d+)/.exec(await look.info('commandstats'))?.[1] ?? 0)
  const before = await pings()
  app.child.kill('SIGTERM') // close() starts with Redis up: it asks Redis (PING), then waits for the attempt in flight
  await within('the close asked Redis whether it is up', (async () => { while (await pings() === before) await sleep(10) })(), kSettle)
  look.disconnect()
  await redis.stop()
  receiver.answer(200) // the attempt ends; what BullMQ then sends to Redis waits for a Redis that is gone
  await within(`the app closed (its output: ${app.output()})`, (async () => { while (!app.output().includes('closed\n')) await sleep(20) })(), kSettle)
  await within(`the app exited by itself after its close (its output: ${app.output()})`, app.exited, kSettle)
  t.equal(app.child.signalCode, null, 'not killed')
  t.equal(app.child.exitCode, 0, `exit code 0 (its output: ${app.output().trim()})`)
})

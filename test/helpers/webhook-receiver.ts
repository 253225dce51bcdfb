import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { webhookReceiver } from '../../index'

/** What a test receiver saw of one delivery attempt. */
export interface Seen { status: number, id: string | undefined, timestamp: string | undefined, signature: string | undefined, at: number }

export interface TestReceiver {
  url: string
  seen: Seen[]
  /** The events the receiver's handler ran, in order. */
  events: Array<{ id: string | undefined, event: unknown }>
  /** How many times the handler ran for `id`. */
  handled: (id: string) => number
}

/**
 * A real receiver (the webhookReceiver plugin, its own in-memory idempotency store) on 127.0.0.1 at /hooks, behind a
 * hook that answers the statuses of `statuses` in turn (then lets the receiver answer): attempts meet a real
 * verification. A 503 or 429 carries `Retry-After: retryAfter`.
 */
export async function startReceiver (t: Test, secret: string, statuses: number[] = [], retryAfter = '0'): Promise<TestReceiver> {
  const seen: Seen[] = []
  const events: TestReceiver['events'] = []
  const app: FastifyInstance = Fastify()
  let n = 0
  app.addHook('onRequest', async (request, reply) => {
    const status = statuses[n++]
    const header = (name: string): string | undefined => request.headers[name] as string | undefined
    seen.push({ status: status ?? 200, id: header('webhook-id'), timestamp: header('webhook-timestamp'), signature: header('webhook-signature'), at: Date.now() })
    if (status !== undefined) {
      if (status === 429 || status === 503) void reply.header('retry-after', retryAfter)
      return await reply.code(status).send({ status })
    }
  })
  await app.register(webhookReceiver, { path: '/hooks', secret, handler: (event, _request, meta) => { events.push({ id: meta.id, event }) } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close() })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    seen,
    events,
    handled: (id) => events.filter((e) => e.id === id).length
  }
}

/** A receiver on 127.0.0.1 whose handler holds each request until the test answers it. */
export async function heldReceiver (t: Test): Promise<{ url: string, held: () => number, answer: (status: number) => void }> {
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

/**
 * `fastify.register(webhookReceiver, { path, secret, handler })`: one POST route that reads its body as raw bytes
 * (its own encapsulated content-type parser: the app's other routes keep Fastify's JSON parsing), verifies them,
 * parses them and runs `handler(event, request, meta)` once per event id.
 *
 * Replies: 400 / 401 (`WebhookVerificationError`), 413 past `bodyLimit`, 200 `{ received: true }` once the handler
 * finished (`duplicate: true` when the id was handled already), 500 (`WebhookHandlerError`) when it threw. A delivery
 * whose id another delivery is running waits for that one to end (it then answers `duplicate`, or runs the handler
 * itself when the first failed); it answers 409 with `Retry-After` only if the id is still held after that.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { WebhookHandlerError } from '../errors'
import { MemoryIdempotencyStore, type IdempotencyStore } from './idempotency-store'
import { resolveReceiverOptions, type WebhookMeta, type WebhookReceiverOptions } from './receiver-options'
import { createVerifier } from './verify'

/** How many times a duplicate waits for the delivery that holds its id before it answers 409. */
const kWaitRounds = 2

function rawBody (_request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void): void {
  done(null, body)
}

/**
 * The event id: the standard scheme's signed `webhook-id`; else a string `id` in the (signed) body, such as Stripe's
 * `evt_…`; else an unsigned `webhook-id` header (what this library's sender adds for the other schemes).
 */
function eventId (verifiedId: string | undefined, request: FastifyRequest, payload: unknown): string | undefined {
  if (verifiedId !== undefined) return verifiedId
  const id = (payload as { id?: unknown } | null)?.id
  if (typeof id === 'string' && id !== '') return id
  const header = request.headers['webhook-id']
  return typeof header === 'string' && header !== '' ? header : undefined
}

const receiver: FastifyPluginAsync<WebhookReceiverOptions> = async function webhookReceiver (fastify, options) {
  const o = resolveReceiverOptions(options)
  const verify = createVerifier({ secret: o.secret, secrets: o.secrets, scheme: o.scheme, tolerance: o.tolerance, header: o.header }, 'webhookReceiver')
  const store: IdempotencyStore = o.store ?? new MemoryIdempotencyStore()
  if (o.store === undefined) fastify.addHook('onClose', async () => { await store.close?.() })
  const { handler, lease, ttl, path } = o

  // Encapsulated (see the export): these parsers serve this plugin's route only.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: o.bodyLimit }, rawBody)

  fastify.post(path, { bodyLimit: o.bodyLimit }, async function receiveWebhook (request: FastifyRequest, reply: FastifyReply) {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const verified = verify(body, request.headers)
    const meta: WebhookMeta = { id: eventId(verified.id, request, verified.payload), timestamp: verified.timestamp }
    if (meta.id === undefined) {
      // Nothing to tell one delivery from another: every delivery runs.
      await run(verified.payload, request, meta)
      return { received: true }
    }
    const key = `${path}\n${meta.id}`
    for (let round = 0; ; round++) {
      let claim
      try {
        claim = await store.claim(key, lease)
      } catch (err) {
        // A store that fails must not lose the event: run it (at least once rather than at most once).
        request.log.warn({ err, webhookId: meta.id }, 'webhook idempotency store failed: running the handler unguarded')
        claim = 'unguarded' as const
      }
      if (claim === 'done') return { received: true, duplicate: true }
      if (claim === 'claimed' || claim === 'unguarded') {
        try {
          await run(verified.payload, request, meta)
        } catch (err) {
          if (claim === 'claimed') await store.release(key).catch((e: unknown) => { request.log.warn({ err: e, webhookId: meta.id }, 'webhook idempotency store failed to release an id') })
          throw err
        }
        if (claim === 'claimed') await store.complete(key, ttl).catch((e: unknown) => { request.log.warn({ err: e, webhookId: meta.id }, 'webhook idempotency store failed to mark an id done') })
        return { received: true }
      }
      if (round === kWaitRounds) {
        void reply.header('retry-after', String(Math.ceil(lease / 1000))).code(409)
        return { received: false, reason: 'another delivery of this id is being handled' }
      }
      await store.settled(key, lease)
    }
  })

  async function run (event: unknown, request: FastifyRequest, meta: WebhookMeta): Promise<void> {
    try {
      await handler(event, request, meta)
    } catch (cause) {
      const err = new WebhookHandlerError(`webhook ${meta.id ?? '(no id)'}: the handler failed`, { cause })
      if (meta.id !== undefined) err.webhookId = meta.id
      throw err
    }
  }
}

/**
 * The receiver plugin. Encapsulated (`encapsulate: true`): its raw-body parser stays inside it, and it may be
 * registered once per path.
 */
export const webhookReceiver = fp(receiver, { fastify: '5.x', name: 'fastify-http-services-webhook-receiver', encapsulate: true })

/**
 * `fastify.register(webhookReceiver, { path, secret, handler })`: one POST route that reads its body as raw bytes
 * (its own encapsulated content-type parser: the app's other routes keep Fastify's JSON parsing), verifies them,
 * parses them and runs `handler(event, request, meta)` once per event: per signed id, else per signed body.
 *
 * Replies: 400 / 401 (`WebhookVerificationError`), 413 past `bodyLimit`, 200 `{ received: true }` once the handler
 * finished (`duplicate: true` when the id was handled already), 500 (`WebhookHandlerError`) when it threw. A delivery
 * whose id another delivery is running waits for that one to end (it then answers `duplicate`, or runs the handler
 * itself when the first failed); it answers 409 with `Retry-After` only if the id is still held after that.
 */
import { createHash } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { WebhookHandlerError } from '../errors'
import { RedisConnection } from '../redis/connection'
import { MemoryIdempotencyStore, type Claim, type IdempotencyStore } from './idempotency-store'
import { RedisIdempotencyStore } from './redis-idempotency-store'
import { resolveReceiverOptions, type WebhookMeta, type WebhookReceiverOptions } from './receiver-options'
import { createVerifier } from './verify'

/** How many times a duplicate waits for the delivery that holds its id before it answers 409. */
const kWaitRounds = 2

function rawBody (_request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void): void {
  done(null, body)
}

/**
 * The event id, always from signed content: the standard scheme's `webhook-id` (part of what it signs); else a string
 * `id` in the signed body, such as Stripe's `evt_…`. An unsigned header is never one (a captured delivery resent with
 * a new `webhook-id` would run again).
 */
function eventId (verifiedId: string | undefined, payload: unknown): string | undefined {
  if (verifiedId !== undefined) return verifiedId
  const id = (payload as { id?: unknown } | null)?.id
  return typeof id === 'string' && id !== '' ? id : undefined
}

/**
 * The idempotency key of a delivery: its event id, else (the `hmac` and `stripe` schemes with no `id` in the body) the
 * SHA-256 of the signed body, so a replayed delivery is still recognized. The body alone, not Stripe's `${t}.${body}`:
 * a sender's retry is signed afresh with a new `t`, and it is the same event. Two identical bodies are one event.
 */
function idempotencyKey (path: string, id: string | undefined, body: Buffer): string {
  return id !== undefined ? `${path}\n${id}` : `${path}\nsha256:${createHash('sha256').update(body).digest('hex')}`
}

/** A store call as a promise, whatever the store returns or throws (a custom store may answer plain values). */
async function call<T> (fn: () => T | Promise<T>): Promise<T> {
  return await Promise.resolve().then(fn)
}

function isClaim (value: unknown): value is Claim {
  const c = value as { result?: unknown, token?: unknown } | null
  if (typeof c !== 'object' || c === null) return false
  return c.result === 'claimed' ? typeof c.token === 'string' : c.result === 'done' || c.result === 'busy'
}

const receiver: FastifyPluginAsync<WebhookReceiverOptions> = async function webhookReceiver (fastify, options) {
  const o = resolveReceiverOptions(options)
  const verify = createVerifier({ secret: o.secret, secrets: o.secrets, scheme: o.scheme, tolerance: o.tolerance, header: o.header }, 'webhookReceiver')
  // Without a `store`: a Redis one when `fastify.httpServices` has a `redis` connection, else one in memory. Chosen
  // when the app is ready (or at the first delivery), so the httpServices plugin may be registered before or after
  // this one, as long as its decorator reaches this plugin (the same or a parent context).
  let own: IdempotencyStore | undefined
  const storeOf = (): IdempotencyStore => o.store ?? (own ??= defaultStore(fastify))
  if (o.store === undefined) {
    fastify.addHook('onReady', async function chooseIdempotencyStore () { storeOf() })
    fastify.addHook('onClose', async () => { await own?.close?.() })
  }
  const { handler, lease, ttl, path } = o

  // Encapsulated (see the export): these parsers serve this plugin's route only.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: o.bodyLimit }, rawBody)

  fastify.post(path, { bodyLimit: o.bodyLimit }, async function receiveWebhook (request: FastifyRequest, reply: FastifyReply) {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const verified = verify(body, request.headers)
    const meta: WebhookMeta = { id: eventId(verified.id, verified.payload), timestamp: verified.timestamp }
    const key = idempotencyKey(path, meta.id, body)
    const store = storeOf()
    for (let round = 0; ; round++) {
      let claim: Claim | 'unguarded'
      try {
        const got = await call(() => store.claim(key, lease))
        if (!isClaim(got)) throw new TypeError('claim() returned neither { result: "claimed", token } nor { result: "done" | "busy" }')
        claim = got
      } catch (err) {
        // A store that fails must not lose the event: run it (at least once rather than at most once).
        request.log.warn({ err, webhookId: meta.id }, 'webhook idempotency store failed: running the handler unguarded')
        claim = 'unguarded'
      }
      if (claim === 'unguarded') {
        await run(verified.payload, request, meta)
        return { received: true }
      }
      if (claim.result === 'done') return { received: true, duplicate: true }
      if (claim.result === 'claimed') {
        const { token } = claim
        const started = Date.now()
        try {
          await run(verified.payload, request, meta)
        } catch (err) {
          await call(() => store.release(key, token)).catch((e: unknown) => { request.log.warn({ err: e, webhookId: meta.id }, 'webhook idempotency store failed to release an id') })
          throw err
        }
        if (Date.now() - started > lease) {
          request.log.warn({ webhookId: meta.id, lease }, 'webhook handler outlived its lease: a redelivery may have run it too (raise lease)')
        }
        await call(() => store.complete(key, token, ttl)).catch((e: unknown) => { request.log.warn({ err: e, webhookId: meta.id }, 'webhook idempotency store failed to mark an id done') })
        return { received: true }
      }
      if (round === kWaitRounds) {
        void reply.header('retry-after', String(Math.ceil(lease / 1000))).code(409)
        return { received: false, reason: 'another delivery of this id is being handled' }
      }
      // A failed wait is a wait: the next claim decides.
      await call(() => store.settled(key, lease)).catch((e: unknown) => { request.log.warn({ err: e, webhookId: meta.id }, 'webhook idempotency store failed to wait for an id') })
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

/** The store a receiver makes itself: in the registry's Redis when it has one, else in memory. */
function defaultStore (fastify: object): IdempotencyStore {
  const redis = (fastify as { httpServices?: { redis?: unknown } }).httpServices?.redis
  return redis instanceof RedisConnection ? new RedisIdempotencyStore(redis) : new MemoryIdempotencyStore()
}

/**
 * The receiver plugin. Encapsulated (`encapsulate: true`): its raw-body parser stays inside it, and it may be
 * registered once per path.
 */
export const webhookReceiver = fp(receiver, { fastify: '5.x', name: 'fastify-http-services-webhook-receiver', encapsulate: true })

/**
 * The options of `webhookReceiver`, one definition (rows checked by `satisfies Spec`), validated at registration with
 * messages naming `webhookReceiver.<key>`. Secrets are checked by `keysOf`, which never shows their value.
 */
import type { FastifyRequest } from 'fastify'
import { arrayOf, integer, invalid, isString, oneOf, rule } from '../config/checkers'
import { defineGroup, type Spec } from '../config/options/group'
import { fn, ms, positiveMs, string } from '../config/values'
import type { IdempotencyStore } from './idempotency-store'
import { hmacHeaderOf, kDefaultTolerance, kHmacHeader, keysOf } from './keys'
import type { WebhookScheme } from './scheme'

/** What a receiver's handler is told besides the event. */
export interface WebhookMeta {
  /**
   * The event id, from signed content only: the standard scheme's `webhook-id`, else a string `id` in the body.
   * `undefined` without one (`hmac` and `stripe` bodies with no `id`: the receiver then takes the body's SHA-256 as
   * the event, so identical bodies run once); an unsigned `webhook-id` header is never used.
   */
  id?: string
  /** The signed timestamp (Unix s), when the scheme carries one. */
  timestamp?: number
}

/** Options of `fastify.register(webhookReceiver, …)`. Give `secret` or `secrets`. */
export interface WebhookReceiverOptions {
  /** The route's path; the route takes POST. */
  path: string
  /** The secret. */
  secret?: string
  /** Several secrets (a rotation): a signature made with any of them passes. */
  secrets?: string[]
  /**
   * `'standard'` (Standard Webhooks), `'stripe'` or `'hmac'`.
   * @default 'standard'
   */
  scheme?: WebhookScheme
  /** Runs once per event (per signed id, else per body) with the parsed body; its throw answers 500 so the sender retries. */
  handler: (event: unknown, request: FastifyRequest, meta: WebhookMeta) => unknown
  /**
   * How far, in ms, the signed timestamp may be from now, either way.
   * @default 300000
   */
  tolerance?: number
  /**
   * Largest body in bytes (413 beyond).
   * @default 1048576
   */
  bodyLimit?: number
  /**
   * The `hmac` scheme's header.
   * @default 'x-webhook-signature'
   */
  header?: string
  /**
   * Where handled ids are kept. When not given: a `RedisIdempotencyStore` in the registry's Redis when
   * `fastify.httpServices` has the `redis` option (shared by every instance on that Redis), else an in-memory store
   * (per process).
   * @default new MemoryIdempotencyStore(), or a RedisIdempotencyStore with the registry's `redis`
   */
  store?: IdempotencyStore
  /**
   * How long, in ms, a handled id is remembered (a redelivery within it is acknowledged without running).
   * @default 86400000
   */
  ttl?: number
  /**
   * How long, in ms, one delivery may hold an id while its handler runs; a duplicate waits for it at most this long.
   * @default 60000
   */
  lease?: number
}

const store = rule('an idempotency store (claim, complete, release and settled functions)', (v) => {
  const s = v as Record<string, unknown> | null
  return typeof s === 'object' && s !== null && ['claim', 'complete', 'release', 'settled'].every((k) => typeof s[k] === 'function')
})

export const webhookReceiverOptions = defineGroup({
  path: { check: rule('a path starting with "/"', (v) => isString(v) && v.startsWith('/')), default: undefined },
  secret: { check: string, default: undefined },
  secrets: { check: arrayOf(string, 'a non-empty array of secrets', 1), default: undefined },
  scheme: { check: oneOf('standard', 'stripe', 'hmac'), default: 'standard' },
  handler: { check: fn, default: undefined },
  tolerance: { check: ms, default: kDefaultTolerance },
  bodyLimit: { check: integer(1), default: 1024 * 1024 },
  header: { check: string, default: kHmacHeader },
  store: { check: store, default: undefined },
  ttl: { check: positiveMs, default: 24 * 60 * 60 * 1000 },
  lease: { check: positiveMs, default: 60_000 }
} satisfies Spec<WebhookReceiverOptions>, {
  required: ['path', 'handler'],
  refine (value, key) {
    if ((value.secret === undefined) === (value.secrets === undefined)) throw invalid(`${key}.secret`, 'give either secret or secrets')
    const scheme = (value.scheme ?? 'standard') as WebhookScheme
    if (value.secrets !== undefined) keysOf(scheme, value.secrets, `${key}.secrets`)
    else keysOf(scheme, value.secret, `${key}.secret`)
    hmacHeaderOf(value.header, `${key}.header`)
  }
})

/** The receiver's options, checked (`InvalidOptionsError` naming `webhookReceiver.<key>`) and with defaults filled. */
export function resolveReceiverOptions (options: WebhookReceiverOptions): Required<Omit<WebhookReceiverOptions, 'secret' | 'secrets' | 'store'>> & Pick<WebhookReceiverOptions, 'secret' | 'secrets' | 'store'> {
  // Fastify passes its own register options (prefix, logLevel …) in the same object: they are not ours to check.
  const { prefix, logLevel, logSerializers, ...own } = options as WebhookReceiverOptions & Record<string, unknown>
  webhookReceiverOptions.check(own, 'webhookReceiver')
  const d = webhookReceiverOptions.defaults
  return {
    ...own,
    scheme: own.scheme ?? d.scheme,
    tolerance: own.tolerance ?? d.tolerance,
    bodyLimit: own.bodyLimit ?? d.bodyLimit,
    header: own.header ?? d.header,
    ttl: own.ttl ?? d.ttl,
    lease: own.lease ?? d.lease
  }
}

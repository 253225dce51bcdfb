/**
 * `httpServices.webhooks`: sends events to services configured with `webhook`, through the service's own client (its
 * pool, TLS, proxy, timeouts, breaker and diagnostics apply) with the service's retries turned off, so `schedule` is
 * the only retrier. Each event keeps its `webhook-id` and body across attempts; its timestamp and signature are made
 * fresh for each one.
 *
 * This file checks an event and builds its body; where deliveries wait and end is a `WebhookQueue`: BullMQ jobs in
 * Redis when the registry has `redis` (bullmq-queue.ts: durable, shared by every instance), else timers in this
 * process (memory-queue.ts: lost on restart). Chosen when the sender is made, so a missing bullmq fails registration.
 */
import { ClientClosedError, InvalidRequestError } from '../errors'
import type { ResolvedWebhook } from '../config/options/webhook'
import type { RedisConnection } from '../redis/connection'
import type { HttpService } from '../service'
import { BullmqWebhookQueue } from './bullmq-queue'
import type { DeadLetter, DeadLetterStore } from './dead-letters'
import type { Prepared, SenderRegistry } from './delivery'
import { MemoryWebhookQueue } from './memory-queue'
import type { PendingWebhook, WebhookDelivered, WebhookQueue, WebhookReceipt, WebhookStats } from './queue'
import { checkWebhookId, newWebhookId } from './sign'

export { nextWait, type SenderRegistry } from './delivery'
export type { PendingWebhook, WebhookDelivered, WebhookReceipt, WebhookStats } from './queue'

/** An event to send: its `type` (`invoice.paid`) and its `data`, sent as `{ type, timestamp, data }`. */
export interface WebhookEvent {
  type: string
  data?: unknown
}

/** Options of one `send`. */
export interface SendWebhookOptions {
  /** The path to POST to, instead of the service's `webhook.path`. */
  path?: string
  /** The event id (`webhook-id`), instead of a fresh `msg_…` one: a retry of your own sends the same id. */
  id?: string
}

/** @internal Where the sender's durable queue lives: the registry's Redis connection and its close timeout. */
export interface SenderDurability {
  redis: RedisConnection
  /** The `redis` URL when the library opened the connection (BullMQ's are new ones from it), else `undefined`. */
  url: string | undefined
  closeTimeout: number
}

export class WebhookSender {
  private readonly registry: SenderRegistry
  private readonly queue: WebhookQueue
  private closed = false

  /**
   * @internal The registry makes it; services with a `webhook` option get `stats().webhooks`. With `durable` (the
   * registry has `redis` and a service is a webhook endpoint), deliveries are BullMQ jobs; `deadLetters` is the
   * in-memory queue's store.
   */
  constructor (registry: SenderRegistry, services: HttpService[], deadLetters?: DeadLetterStore, durable?: SenderDurability) {
    this.registry = registry
    this.queue = durable === undefined
      ? new MemoryWebhookQueue(registry, deadLetters)
      : new BullmqWebhookQueue(registry, services.filter((s) => s.options.webhook !== undefined).map((s) => s.name), durable.redis, durable.url, durable.closeTimeout)
    for (const service of services) {
      if (service.options.webhook === undefined) continue
      const name = service.name
      service.addStats('webhooks', () => this.queue.stats(name))
    }
  }

  /**
   * Queues `event` for service `name` and resolves once it is accepted, not delivered. Rejects with
   * `WebhookDeliveryError` (`reason: 'disabled'`) while a 410 keeps the endpoint disabled, `ClientClosedError` after
   * `close()`, `InvalidRequestError` for a bad event or (in memory) an id already queued, `UnknownServiceError`.
   * With Redis, an id already queued or delivered is the same delivery: `send` resolves and nothing more is sent.
   */
  async send (name: string, event: WebhookEvent, options: SendWebhookOptions = {}): Promise<WebhookReceipt> {
    const p = this.prepare(name, event, options)
    await this.queue.send(p)
    return { id: p.id, service: p.service }
  }

  /**
   * Queues `event` and resolves once it is delivered (a 2xx), with every attempt. Rejects with `WebhookDeliveryError`
   * when the schedule stops: `rejected` (3xx or a 4xx not retried), `gone` (410), `exhausted`, `closed`.
   */
  async sendAndWait (name: string, event: WebhookEvent, options: SendWebhookOptions = {}): Promise<WebhookDelivered> {
    return await this.queue.sendAndWait(this.prepare(name, event, options))
  }

  /** The dead letters of service `name` (all when `undefined`), oldest first. */
  async deadLetters (name?: string): Promise<DeadLetter[]> {
    return await this.queue.deadLetters(name)
  }

  /**
   * Sends the dead letter `id` again (same id, same body, a fresh schedule): the letter is removed from the dead
   * letters first, then queued (put back if it cannot be). Rejects with `InvalidRequestError` when there is no such
   * letter (or a concurrent replay took it), as `send` does otherwise.
   */
  async replay (id: string): Promise<WebhookReceipt> {
    return await this.queue.replay(id)
  }

  /**
   * Events queued now in this process (waiting for an attempt or in one), for service `name` or all: after `close()`,
   * those not sent. Always empty with Redis: undelivered events stay there for the next instance.
   */
  pending (name?: string): PendingWebhook[] {
    return this.queue.pending(name)
  }

  /** Whether a 410 disabled service `name`'s endpoint (with Redis: as this process last saw the shared flag). */
  isDisabled (name: string): boolean {
    return this.queue.isDisabled(name)
  }

  /** Turns service `name`'s endpoint back on after a 410 (with Redis: for every instance). */
  async enable (name: string): Promise<void> {
    await this.queue.enable(name)
  }

  /** @internal Starts the queue (the registry's `open()`): with Redis, this process's worker starts taking jobs. */
  async open (): Promise<void> {
    if (!this.closed) await this.queue.open()
  }

  /**
   * Stops the queue: no attempt starts any more, `sendAndWait` callers waiting for a next attempt are rejected
   * (`reason: 'closed'`). An attempt in flight settles with its own outcome, bounded by the registry's `closeTimeout`.
   * In memory, events not delivered stay listable with `pending()`; with Redis they stay in Redis. The registry's
   * `close()` calls it.
   */
  async close (): Promise<void> {
    this.closed = true
    await this.queue.close()
  }

  private prepare (name: string, event: WebhookEvent, options: SendWebhookOptions): Prepared {
    const config = this.configOf(name)
    if (typeof event !== 'object' || event === null || typeof event.type !== 'string' || event.type === '') {
      throw new InvalidRequestError(`webhooks: ${name}: an event needs a non-empty string type`)
    }
    if (typeof options !== 'object' || options === null) throw new InvalidRequestError(`webhooks: ${name}: send options must be an object`)
    const path = options.path ?? config.path
    if (typeof path !== 'string' || !path.startsWith('/')) throw new InvalidRequestError(`webhooks: ${name}: path must start with "/"`)
    let id: string
    try {
      id = options.id === undefined ? newWebhookId() : checkWebhookId(options.id, 'id')
    } catch (err) {
      throw new InvalidRequestError(`webhooks: ${name}: ${(err as Error).message}`)
    }
    const createdAt = Date.now()
    const timestamp = new Date(createdAt).toISOString()
    // The standard scheme signs the id in its headers; the others sign only the body, so the id goes in it too.
    let body: string
    try {
      body = config.scheme === 'standard'
        ? JSON.stringify({ type: event.type, timestamp, data: event.data })
        : JSON.stringify({ id, type: event.type, timestamp, data: event.data })
    } catch (err) {
      throw new InvalidRequestError(`webhooks: ${name}: the event's data cannot be sent as JSON`, { cause: err })
    }
    return { id, service: name, path, type: event.type, body, createdAt }
  }

  private configOf (name: string): ResolvedWebhook {
    if (this.closed) throw new ClientClosedError(`webhooks: ${name}: the registry is closed`)
    const config = this.registry.get(name).options.webhook
    if (config === undefined) throw new InvalidRequestError(`webhooks: service ${name} has no webhook option (secret, scheme, schedule)`)
    return config
  }
}

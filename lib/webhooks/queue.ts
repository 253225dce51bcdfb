/**
 * The contract between `httpServices.webhooks` (sender.ts: checks an event and signs nothing yet) and where deliveries
 * wait and end: in this process (memory-queue.ts) or in Redis as BullMQ jobs (bullmq-queue.ts). Both keep the same
 * behaviour and shapes, so the sender's public API does not depend on which one runs.
 */
import type { WebhookAttempt } from '../errors'
import type { DeadLetter } from './dead-letters'
import type { Prepared } from './delivery'

/** What `send` resolves with once the event is queued. */
export interface WebhookReceipt {
  id: string
  service: string
}

/** What `sendAndWait` resolves with once the event is delivered. */
export interface WebhookDelivered extends WebhookReceipt {
  /** Every attempt, the successful one last. */
  attempts: WebhookAttempt[]
}

/** A service's webhook counters, under `stats()[name].webhooks`. */
export interface WebhookStats {
  /** Events waiting for an attempt or in one now. */
  queued: number
  delivered: number
  /** Events that ended in the dead letters. */
  deadLettered: number
  /** Attempts made (every try of every event). */
  attempts: number
  /** Whether a 410 disabled the endpoint (`enable(name)` turns it back on). */
  disabled: boolean
}

/** An event still queued, as `pending()` lists it. */
export interface PendingWebhook extends Omit<Prepared, 'createdAt'> {
  attempts: WebhookAttempt[]
}

export interface WebhookQueue {
  /** Queues `p`; resolves once it is accepted. Rejects as `WebhookSender.send` documents. */
  send: (p: Prepared) => Promise<void>
  /** Queues `p`; resolves once it is delivered, rejects with `WebhookDeliveryError` when its schedule stops. */
  sendAndWait: (p: Prepared) => Promise<WebhookDelivered>
  deadLetters: (name?: string) => Promise<DeadLetter[]>
  replay: (id: string) => Promise<WebhookReceipt>
  pending: (name?: string) => PendingWebhook[]
  isDisabled: (name: string) => boolean
  enable: (name: string) => Promise<void>
  stats: (name: string) => WebhookStats
  /** Starts taking deliveries (the registry's `open()`). */
  open: () => Promise<void>
  /** Stops taking deliveries; an attempt in flight may end (the registry's `closeTimeout` bounds it). Never rejects. */
  close: () => Promise<void>
}

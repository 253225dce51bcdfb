/**
 * Where webhook events that ended without delivery go, with every attempt's outcome, until replayed. The interface
 * is what a shared store implements (a Redis one: a hash per letter and a sorted set per service); the in-memory one
 * below is the default and is lost on restart.
 */
import type { WebhookAttempt, WebhookDeliveryFailure } from '../errors'

/** An event whose delivery ended without success. */
export interface DeadLetter {
  /** The event's `webhook-id`: `replay(id)` sends it again under the same id. */
  id: string
  service: string
  path: string
  /** The event's `type`. */
  type: string
  /** The body as it was sent (the same bytes on a replay). */
  body: string
  /** Why the delivery ended. */
  reason: WebhookDeliveryFailure
  /** Every attempt, in order. */
  attempts: WebhookAttempt[]
  /** When the event was accepted, then when it failed (Unix ms). */
  createdAt: number
  failedAt: number
}

export interface DeadLetterStore {
  add: (letter: DeadLetter) => Promise<void>
  /** The letters of `service` (all when `undefined`), oldest first. */
  list: (service?: string) => Promise<DeadLetter[]>
  get: (id: string) => Promise<DeadLetter | undefined>
  /** Removes a letter (a replay took it); `false` when there was none. */
  remove: (id: string) => Promise<boolean>
}

/** The in-memory store: a Map in insertion order. Unbounded: every letter stays until replayed or the process ends. */
export class MemoryDeadLetterStore implements DeadLetterStore {
  private readonly letters = new Map<string, DeadLetter>()

  async add (letter: DeadLetter): Promise<void> {
    this.letters.delete(letter.id)
    this.letters.set(letter.id, letter)
  }

  async list (service?: string): Promise<DeadLetter[]> {
    const all = [...this.letters.values()]
    return service === undefined ? all : all.filter((l) => l.service === service)
  }

  async get (id: string): Promise<DeadLetter | undefined> {
    return this.letters.get(id)
  }

  async remove (id: string): Promise<boolean> {
    return this.letters.delete(id)
  }
}

/**
 * The in-memory webhook queue: one timer per event waiting for its next attempt, cleared by `close()`; every event
 * still queued, the dead letters and the disabled endpoints are lost when the process ends. Used when the registry
 * has no `redis` (bullmq-queue.ts takes its place then).
 */
import { ClientClosedError, InvalidRequestError, type WebhookAttempt, type WebhookDeliveryFailure } from '../errors'
import { kMaxTimerMs } from '../config/validate'
import type { ResolvedWebhook } from '../config/options/webhook'
import type { Logger } from '../pipeline/types'
import { MemoryDeadLetterStore, type DeadLetter, type DeadLetterStore } from './dead-letters'
import { attemptOnce, deliveryError, disabledError, letterOf, nextWait, noLetter, type Prepared, type SenderRegistry } from './delivery'
import type { PendingWebhook, WebhookDelivered, WebhookQueue, WebhookReceipt, WebhookStats } from './queue'

interface Delivery extends Prepared {
  attempts: WebhookAttempt[]
  timer: NodeJS.Timeout | undefined
  waiters: Array<{ resolve: (value: WebhookDelivered) => void, reject: (err: unknown) => void }>
}

type Counts = Omit<WebhookStats, 'disabled'>

/** How long a delivered id is remembered: the same id sent again within it is that delivery (as BullMQ keeps jobs). */
const kKeepDelivered = 24 * 3600 * 1000
/** Most delivered ids remembered; past it, the oldest go. */
const kMaxDelivered = 10_000

/** A caller's own copy of a delivery's outcome. */
function copyOf (result: WebhookDelivered): WebhookDelivered {
  return { ...result, attempts: [...result.attempts] }
}

export class MemoryWebhookQueue implements WebhookQueue {
  private readonly registry: SenderRegistry
  private readonly deadLetterStore: DeadLetterStore
  private readonly queue = new Map<string, Delivery>()
  private readonly disabledServices = new Set<string>()
  private readonly counters = new Map<string, Counts>()
  /** Delivered ids (in the order delivered), with what `sendAndWait` answered. */
  private readonly deliveredIds = new Map<string, { at: number, result: WebhookDelivered }>()
  private closed = false

  constructor (registry: SenderRegistry, deadLetters: DeadLetterStore = new MemoryDeadLetterStore()) {
    this.registry = registry
    this.deadLetterStore = deadLetters
  }

  async send (p: Prepared): Promise<void> {
    await this.accept(p)
  }

  async sendAndWait (p: Prepared): Promise<WebhookDelivered> {
    return await new Promise((resolve, reject) => {
      // The caller waits on the delivery from the moment it is queued: a close() right after settles it too.
      this.accept(p, { resolve, reject }).then((accepted) => { if (!('waiters' in accepted)) resolve(accepted) }, reject)
    })
  }

  /**
   * Queues `p`, as the BullMQ queue does: an id already queued or delivered (within a day) is that delivery (its
   * `Delivery`, or what it answered), and an id that is a dead letter is refused (`replay(id)` sends it again).
   * `waiter` joins the delivery in the same step as it is found or queued.
   */
  private async accept (p: Prepared, waiter?: Delivery['waiters'][number]): Promise<Delivery | WebhookDelivered> {
    this.configOf(p.service)
    if (this.disabledServices.has(p.service)) throw disabledError(p.service, p.id, [])
    const join = (d: Delivery): Delivery => {
      if (waiter !== undefined) d.waiters.push(waiter)
      return d
    }
    const queued = this.queue.get(p.id)
    if (queued !== undefined) return join(queued)
    const delivered = this.deliveredIds.get(p.id)
    if (delivered !== undefined && Date.now() - delivered.at < kKeepDelivered) return copyOf(delivered.result)
    if (await this.deadLetterStore.get(p.id) !== undefined) {
      throw new InvalidRequestError(`webhooks: ${p.service}: event ${p.id} is a dead letter: replay(id) sends it again`)
    }
    // Queued meanwhile by another send of the same id (the dead-letter store's answer took a turn).
    return join(this.queue.get(p.id) ?? this.enqueue(p))
  }

  async deadLetters (name?: string): Promise<DeadLetter[]> {
    return await this.deadLetterStore.list(name)
  }

  async replay (id: string): Promise<WebhookReceipt> {
    const letter = await this.deadLetterStore.get(id)
    if (letter === undefined) throw noLetter(id)
    // What would refuse the enqueue, checked before the store is touched (closed, disabled, unknown, already queued).
    this.configOf(letter.service)
    if (this.disabledServices.has(letter.service)) throw disabledError(letter.service, letter.id, [])
    if (this.queue.has(letter.id)) throw new InvalidRequestError(`webhooks: ${letter.service}: event ${letter.id} is already queued`)
    // Removed before it is queued: with a store whose calls overlap, a `remove` landing after the new attempt failed
    // would delete the letter that failure just added.
    if (!await this.deadLetterStore.remove(id)) throw noLetter(id)
    try {
      this.enqueue(letter)
    } catch (err) {
      // Closed (or disabled) while the store removed it: the letter goes back rather than vanishing.
      await this.deadLetterStore.add(letter).catch((e: unknown) => {
        this.registry.get(letter.service).log.error({ err: e, webhookId: letter.id }, 'webhook dead-letter store failed to take back a letter not replayed: the event is lost')
      })
      throw err
    }
    return { id: letter.id, service: letter.service }
  }

  pending (name?: string): PendingWebhook[] {
    const out = []
    for (const d of this.queue.values()) {
      if (name === undefined || d.service === name) out.push({ id: d.id, service: d.service, path: d.path, type: d.type, body: d.body, attempts: [...d.attempts] })
    }
    return out
  }

  isDisabled (name: string): boolean {
    return this.disabledServices.has(name)
  }

  async enable (name: string): Promise<void> {
    this.disabledServices.delete(name)
  }

  stats (name: string): WebhookStats {
    return { ...this.countersOf(name), disabled: this.disabledServices.has(name) }
  }

  async open (): Promise<void> {}

  /**
   * Timers cleared, no attempt starts any more, `sendAndWait` callers waiting for a next attempt rejected (`closed`).
   * An attempt in flight settles with its own outcome (the services' close bounds it).
   */
  async close (): Promise<void> {
    this.closed = true
    for (const d of this.queue.values()) {
      // No timer: its attempt is in flight (it settles when it ends).
      if (d.timer === undefined) continue
      clearTimeout(d.timer)
      d.timer = undefined
      this.settle(d, 'closed')
    }
  }

  private enqueue (p: Prepared): Delivery {
    const config = this.configOf(p.service)
    if (this.disabledServices.has(p.service)) throw disabledError(p.service, p.id, [])
    if (this.queue.has(p.id)) throw new InvalidRequestError(`webhooks: ${p.service}: event ${p.id} is already queued`)
    const delivery: Delivery = { id: p.id, service: p.service, path: p.path, type: p.type, body: p.body, createdAt: p.createdAt, attempts: [], timer: undefined, waiters: [] }
    this.queue.set(p.id, delivery)
    this.countersOf(p.service).queued++
    this.wait(delivery, config.schedule[0])
    return delivery
  }

  private configOf (name: string): ResolvedWebhook {
    if (this.closed) throw new ClientClosedError(`webhooks: ${name}: the registry is closed`)
    const config = this.registry.get(name).options.webhook
    if (config === undefined) throw new InvalidRequestError(`webhooks: service ${name} has no webhook option (secret, scheme, schedule)`)
    return config
  }

  private wait (d: Delivery, ms: number): void {
    d.timer = setTimeout(() => {
      d.timer = undefined
      this.attempt(d).catch((err: unknown) => {
        // Not expected (options were checked at registration): the event must not vanish silently.
        this.registry.get(d.service).log.error({ err, webhookId: d.id }, 'webhook attempt failed unexpectedly')
        void this.fail(d, 'exhausted', this.registry.get(d.service).log)
      })
    }, Math.min(ms, kMaxTimerMs))
  }

  private async attempt (d: Delivery): Promise<void> {
    const service = this.registry.get(d.service)
    const config = service.options.webhook as ResolvedWebhook
    if (this.disabledServices.has(d.service)) return await this.fail(d, 'disabled', service.log)
    const outcome: WebhookAttempt = { attempt: d.attempts.length + 1, at: Date.now() }
    d.attempts.push(outcome)
    this.countersOf(d.service).attempts++
    const { verdict, retryAfter } = await attemptOnce(this.registry, d, outcome, () => this.closed)
    if (verdict === 'closed') {
      service.log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, error: outcome.error }, 'webhook attempt stopped: the registry is closing')
      return this.settle(d, 'closed')
    }
    if (verdict === 'delivered') return this.delivered(d, service.log)
    if (verdict === 'gone') {
      this.disabledServices.add(d.service)
      service.log.warn({ webhookId: d.id, status: 410 }, 'webhook endpoint answered 410 Gone: disabled until enable() is called')
      return await this.fail(d, 'gone', service.log)
    }
    if (verdict === 'rejected') return await this.fail(d, 'rejected', service.log)
    if (d.attempts.length >= config.schedule.length) return await this.fail(d, 'exhausted', service.log)
    if (this.closed) return this.settle(d, 'closed')
    const next = nextWait(config.schedule, d.attempts.length, retryAfter)
    service.log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, status: outcome.status, error: outcome.error, nextAttemptIn: next }, 'webhook attempt failed')
    this.wait(d, next)
  }

  private delivered (d: Delivery, log: Logger): void {
    this.queue.delete(d.id)
    const c = this.countersOf(d.service)
    c.queued--
    c.delivered++
    log.info({ webhookId: d.id, type: d.type, attempts: d.attempts.length, status: d.attempts[d.attempts.length - 1].status }, 'webhook delivered')
    const result = { id: d.id, service: d.service, attempts: [...d.attempts] }
    this.deliveredIds.delete(d.id)
    this.deliveredIds.set(d.id, { at: Date.now(), result })
    for (const id of this.deliveredIds.keys()) {
      if (this.deliveredIds.size <= kMaxDelivered) break
      this.deliveredIds.delete(id)
    }
    for (const w of d.waiters) w.resolve(copyOf(result))
    d.waiters = []
  }

  private async fail (d: Delivery, reason: WebhookDeliveryFailure, log: Logger): Promise<void> {
    this.queue.delete(d.id)
    const c = this.countersOf(d.service)
    c.queued--
    c.deadLettered++
    log.error({ webhookId: d.id, type: d.type, reason, attempts: d.attempts }, 'webhook not delivered: moved to the dead letters')
    try {
      await this.deadLetterStore.add(letterOf(d, reason, d.attempts))
    } catch (err) {
      // The in-memory store cannot fail; a shared one that does loses the letter, and says so loudly.
      log.error({ err, webhookId: d.id, type: d.type, reason }, 'webhook dead-letter store failed: the event is lost')
    }
    this.settle(d, reason)
  }

  /** Rejects the callers waiting on `d` (`sendAndWait`) with why it ended. */
  private settle (d: Delivery, reason: WebhookDeliveryFailure): void {
    if (d.waiters.length === 0) return
    const err = deliveryError(d.service, d.id, reason, d.attempts)
    for (const w of d.waiters) w.reject(err)
    d.waiters = []
  }

  private countersOf (name: string): Counts {
    let c = this.counters.get(name)
    if (c === undefined) {
      c = { queued: 0, delivered: 0, deadLettered: 0, attempts: 0 }
      this.counters.set(name, c)
    }
    return c
  }
}

/**
 * `httpServices.webhooks`: sends events to services configured with `webhook`, through the service's own client (its
 * pool, TLS, proxy, timeouts, breaker and diagnostics apply) with the service's retries turned off, so `schedule` is
 * the only retrier. Each event keeps its `webhook-id` and body across attempts; its timestamp and signature are made
 * fresh for each one.
 *
 * This is the in-memory queue: one timer per event waiting for its next attempt, cleared by `close()`; every event
 * still queued is lost when the process ends. A Redis-backed queue (durable deliveries) takes its place when the
 * registry is given one; the dead letters and the disabled endpoints then live there too.
 */
import { ClientClosedError, InvalidRequestError, WebhookDeliveryError, type WebhookAttempt, type WebhookDeliveryFailure } from '../errors'
import { kMaxTimerMs } from '../config/validate'
import type { ResolvedWebhook } from '../config/options/webhook'
import { parseRetryAfter } from '../pipeline/retry-after'
import type { Logger } from '../pipeline/types'
import type { HttpResponse } from '../response'
import type { HttpService } from '../service'
import { MemoryDeadLetterStore, type DeadLetter, type DeadLetterStore } from './dead-letters'
import { checkWebhookId, newWebhookId, signWebhook } from './sign'

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

/** The registry as the sender uses it (`HttpServices`). */
export interface SenderRegistry {
  get: (name: string) => HttpService
  client: (name: string) => { request: (method: string, path: string, options: object) => Promise<HttpResponse> }
}

interface Delivery {
  id: string
  service: string
  path: string
  type: string
  body: string
  createdAt: number
  attempts: WebhookAttempt[]
  timer: NodeJS.Timeout | undefined
  waiters: Array<{ resolve: (value: WebhookDelivered) => void, reject: (err: unknown) => void }>
}

type Counts = Omit<WebhookStats, 'disabled'>

const kJson = { 'content-type': 'application/json' }

export class WebhookSender {
  private readonly registry: SenderRegistry
  private readonly deadLetterStore: DeadLetterStore
  private readonly queue = new Map<string, Delivery>()
  private readonly disabledServices = new Set<string>()
  private readonly counters = new Map<string, Counts>()
  private closed = false

  /** @internal The registry makes it; services with a `webhook` option get `stats().webhooks`. */
  constructor (registry: SenderRegistry, services: HttpService[], deadLetters: DeadLetterStore = new MemoryDeadLetterStore()) {
    this.registry = registry
    this.deadLetterStore = deadLetters
    for (const service of services) {
      if (service.options.webhook === undefined) continue
      const name = service.name
      service.addStats('webhooks', () => ({ ...this.countersOf(name), disabled: this.disabledServices.has(name) }))
    }
  }

  /**
   * Queues `event` for service `name` and resolves once it is accepted, not delivered. Rejects with
   * `WebhookDeliveryError` (`reason: 'disabled'`) while a 410 keeps the endpoint disabled, `ClientClosedError` after
   * `close()`, `InvalidRequestError` for a bad event or an id already queued, `UnknownServiceError`.
   */
  async send (name: string, event: WebhookEvent, options: SendWebhookOptions = {}): Promise<WebhookReceipt> {
    const delivery = this.accept(name, event, options)
    return { id: delivery.id, service: delivery.service }
  }

  /**
   * Queues `event` and resolves once it is delivered (a 2xx), with every attempt. Rejects with `WebhookDeliveryError`
   * when the schedule stops: `rejected` (3xx or a 4xx not retried), `gone` (410), `exhausted`, `closed`.
   */
  async sendAndWait (name: string, event: WebhookEvent, options: SendWebhookOptions = {}): Promise<WebhookDelivered> {
    const delivery = this.accept(name, event, options)
    return await new Promise((resolve, reject) => { delivery.waiters.push({ resolve, reject }) })
  }

  /** The dead letters of service `name` (all when `undefined`), oldest first. */
  async deadLetters (name?: string): Promise<DeadLetter[]> {
    return await this.deadLetterStore.list(name)
  }

  /**
   * Sends the dead letter `id` again (same id, same body, a fresh schedule): the letter is removed from the dead
   * letters first, then queued (put back if it cannot be). Rejects with `InvalidRequestError` when there is no such
   * letter (or a concurrent replay took it), as `send` does otherwise.
   */
  async replay (id: string): Promise<WebhookReceipt> {
    const letter = await this.deadLetterStore.get(id)
    if (letter === undefined) throw noLetter(id)
    // What would refuse the enqueue, checked before the store is touched (closed, disabled, unknown, already queued).
    this.configOf(letter.service)
    if (this.disabledServices.has(letter.service)) throw disabled(letter.service, letter.id, [])
    if (this.queue.has(letter.id)) throw new InvalidRequestError(`webhooks: ${letter.service}: event ${letter.id} is already queued`)
    // Removed before it is queued: with a store whose calls overlap, a `remove` landing after the new attempt failed
    // would delete the letter that failure just added.
    if (!await this.deadLetterStore.remove(id)) throw noLetter(id)
    let delivery: Delivery
    try {
      delivery = this.enqueue(letter.service, letter.path, letter.id, letter.type, letter.body, letter.createdAt)
    } catch (err) {
      // Closed (or disabled) while the store removed it: the letter goes back rather than vanishing.
      await this.deadLetterStore.add(letter).catch((e: unknown) => {
        this.registry.get(letter.service).log.error({ err: e, webhookId: letter.id }, 'webhook dead-letter store failed to take back a letter not replayed: the event is lost')
      })
      throw err
    }
    return { id: delivery.id, service: delivery.service }
  }

  /** Events queued now (waiting for an attempt or in one), for service `name` or all: after `close()`, those not sent. */
  pending (name?: string): Array<{ id: string, service: string, path: string, type: string, body: string, attempts: WebhookAttempt[] }> {
    const out = []
    for (const d of this.queue.values()) {
      if (name === undefined || d.service === name) out.push({ id: d.id, service: d.service, path: d.path, type: d.type, body: d.body, attempts: [...d.attempts] })
    }
    return out
  }

  /** Whether a 410 disabled service `name`'s endpoint. */
  isDisabled (name: string): boolean {
    return this.disabledServices.has(name)
  }

  /** Turns service `name`'s endpoint back on after a 410. */
  enable (name: string): void {
    this.disabledServices.delete(name)
  }

  /**
   * Stops the queue: timers cleared, no attempt starts any more, `sendAndWait` callers waiting for a next attempt are
   * rejected (`reason: 'closed'`). An attempt in flight settles with its own outcome (a 2xx that lands after `close()`
   * is delivered; the client closing under it ends it as `closed`). Events not delivered stay listable with
   * `pending()` (a shutdown hook may save them). The registry's `close()` calls it.
   */
  close (): void {
    this.closed = true
    for (const d of this.queue.values()) {
      // No timer: its attempt is in flight (it settles when it ends).
      if (d.timer === undefined) continue
      clearTimeout(d.timer)
      d.timer = undefined
      this.settle(d, 'closed')
    }
  }

  private accept (name: string, event: WebhookEvent, options: SendWebhookOptions): Delivery {
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
    return this.enqueue(name, path, id, event.type, body, createdAt)
  }

  private enqueue (name: string, path: string, id: string, type: string, body: string, createdAt: number): Delivery {
    const config = this.configOf(name)
    if (this.disabledServices.has(name)) throw disabled(name, id, [])
    if (this.queue.has(id)) throw new InvalidRequestError(`webhooks: ${name}: event ${id} is already queued`)
    const delivery: Delivery = { id, service: name, path, type, body, createdAt, attempts: [], timer: undefined, waiters: [] }
    this.queue.set(id, delivery)
    this.countersOf(name).queued++
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
    const signed = signWebhook(d.body, { secret: config.secrets, scheme: config.scheme, id: d.id, header: config.header })
    // The standard scheme signs webhook-id; the others carry the id in the signed body (what a receiver must key on)
    // and send the header besides, unsigned, for receivers that log or route by it.
    const headers = config.scheme === 'standard' ? { ...kJson, ...signed } : { ...kJson, ...signed, 'webhook-id': d.id }
    let retryAfter: number | undefined
    try {
      const res = await this.registry.client(d.service).request('POST', d.path, { body: d.body, headers, retry: false, throwHttpErrors: false })
      outcome.status = res.status
      retryAfter = parseRetryAfter(res.headers['retry-after'])
      await res.dump().catch(() => {})
    } catch (err) {
      outcome.error = String((err as { code?: unknown }).code ?? (err as Error).name ?? 'Error')
      // A ClientClosedError before the registry closed is a service not open yet (a send before `ready`): retried.
      if (this.closed) {
        service.log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, error: outcome.error }, 'webhook attempt stopped: the registry is closing')
        return this.settle(d, 'closed')
      }
    }
    const status = outcome.status
    if (status !== undefined && status >= 200 && status < 300) return this.delivered(d, service.log)
    if (status === 410) {
      this.disabledServices.add(d.service)
      service.log.warn({ webhookId: d.id, status }, 'webhook endpoint answered 410 Gone: disabled until enable() is called')
      return await this.fail(d, 'gone', service.log)
    }
    const retried = status === undefined || status === 408 || status === 429 || status >= 500
    if (!retried) return await this.fail(d, 'rejected', service.log)
    if (d.attempts.length >= config.schedule.length) return await this.fail(d, 'exhausted', service.log)
    if (this.closed) return this.settle(d, 'closed')
    const next = nextWait(config.schedule, d.attempts.length, retryAfter)
    service.log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, status, error: outcome.error, nextAttemptIn: next }, 'webhook attempt failed')
    this.wait(d, next)
  }

  private delivered (d: Delivery, log: Logger): void {
    this.queue.delete(d.id)
    const c = this.countersOf(d.service)
    c.queued--
    c.delivered++
    log.info({ webhookId: d.id, type: d.type, attempts: d.attempts.length, status: d.attempts[d.attempts.length - 1].status }, 'webhook delivered')
    for (const w of d.waiters) w.resolve({ id: d.id, service: d.service, attempts: [...d.attempts] })
    d.waiters = []
  }

  private async fail (d: Delivery, reason: WebhookDeliveryFailure, log: Logger): Promise<void> {
    this.queue.delete(d.id)
    const c = this.countersOf(d.service)
    c.queued--
    c.deadLettered++
    const letter: DeadLetter = {
      id: d.id, service: d.service, path: d.path, type: d.type, body: d.body, reason,
      attempts: [...d.attempts], createdAt: d.createdAt, failedAt: Date.now()
    }
    log.error({ webhookId: d.id, type: d.type, reason, attempts: d.attempts }, 'webhook not delivered: moved to the dead letters')
    try {
      await this.deadLetterStore.add(letter)
    } catch (err) {
      // The in-memory store cannot fail; a shared one that does loses the letter, and says so loudly.
      log.error({ err, webhookId: d.id, type: d.type, reason }, 'webhook dead-letter store failed: the event is lost')
    }
    this.settle(d, reason)
  }

  /** Rejects the callers waiting on `d` (`sendAndWait`) with why it ended. */
  private settle (d: Delivery, reason: WebhookDeliveryFailure): void {
    if (d.waiters.length === 0) return
    const err = reason === 'disabled' ? disabled(d.service, d.id, d.attempts) : deliveryError(d, reason)
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

/**
 * The wait before attempt `index` (0-based): the schedule's, or a `Retry-After` the receiver sent, kept within the
 * schedule's bounds: never shorter than the scheduled wait (the schedule is the floor a receiver cannot undercut) nor
 * longer than its longest step.
 */
export function nextWait (schedule: number[], index: number, retryAfter: number | undefined): number {
  const scheduled = schedule[index]
  if (retryAfter === undefined) return scheduled
  return Math.min(Math.max(retryAfter, scheduled), Math.max(...schedule))
}

const kWhy: Record<WebhookDeliveryFailure, string> = {
  rejected: 'the endpoint refused it (a status that is not retried)',
  gone: 'the endpoint answered 410 Gone and is now disabled',
  exhausted: 'every attempt of its schedule failed',
  disabled: 'the endpoint is disabled (it answered 410 Gone; enable() turns it back on)',
  closed: 'the registry closed before it was delivered'
}

function deliveryError (d: Delivery, reason: WebhookDeliveryFailure): WebhookDeliveryError {
  const last = d.attempts[d.attempts.length - 1]
  const what = last === undefined ? '' : last.status !== undefined ? `, last answer ${last.status}` : `, last error ${last.error ?? ''}`
  const err = new WebhookDeliveryError(`webhook ${d.id} to ${d.service}: not delivered: ${kWhy[reason]} (${d.attempts.length} attempt${d.attempts.length === 1 ? '' : 's'}${what})`)
  err.webhookId = d.id
  err.reason = reason
  err.outcomes = [...d.attempts]
  err.service = d.service
  err.attempts = d.attempts.length
  if (reason === 'closed') err.statusCode = 503
  return err
}

function noLetter (id: string): InvalidRequestError {
  return new InvalidRequestError(`webhooks: no dead letter ${JSON.stringify(String(id)).slice(0, 80)}`)
}

function disabled (service: string, id: string, attempts: WebhookAttempt[]): WebhookDeliveryError {
  const err = new WebhookDeliveryError(`webhook ${id} to ${service}: ${kWhy.disabled}`)
  err.webhookId = id
  err.reason = 'disabled'
  err.outcomes = [...attempts]
  err.service = service
  err.attempts = attempts.length
  err.statusCode = 503
  return err
}

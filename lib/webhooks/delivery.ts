/**
 * What both webhook queues (memory-queue.ts, bullmq-queue.ts) share: one signed attempt and how its answer is read,
 * the wait before the next one, and the errors `sendAndWait` and `send` reject with. A queue decides only where an
 * event waits between attempts and where it ends.
 */
import { InvalidRequestError, WebhookDeliveryError, type WebhookAttempt, type WebhookDeliveryFailure } from '../errors'
import type { ResolvedWebhook } from '../config/options/webhook'
import { parseRetryAfter } from '../pipeline/retry-after'
import type { HttpResponse } from '../response'
import type { HttpService } from '../service'
import type { DeadLetter } from './dead-letters'
import { signWebhook } from './sign'

/** The registry as the sender uses it (`HttpServices`). */
export interface SenderRegistry {
  get: (name: string) => HttpService
  client: (name: string) => { request: (method: string, path: string, options: object) => Promise<HttpResponse> }
}

/** An event accepted by `send`, ready for its attempts: the body is the exact bytes signed at each one. */
export interface Prepared {
  id: string
  service: string
  path: string
  type: string
  body: string
  createdAt: number
}

/** What an attempt's answer means: delivered, retried on the schedule, or the end of the delivery. */
export type Verdict = 'delivered' | 'retry' | 'gone' | 'rejected' | 'closed'

const kJson = { 'content-type': 'application/json' }

/**
 * Makes attempt number `outcome.attempt` of `d`: signs it afresh, POSTs it through the service's client (its own
 * retries off) and fills `outcome` with the status or the error's code. `isClosing` says whether an error is the
 * registry closing under the attempt (verdict `closed`) rather than a failure to retry.
 */
export async function attemptOnce (
  registry: SenderRegistry, d: Prepared, outcome: WebhookAttempt, isClosing: () => boolean
): Promise<{ verdict: Verdict, retryAfter: number | undefined }> {
  const config = registry.get(d.service).options.webhook as ResolvedWebhook
  const signed = signWebhook(d.body, { secret: config.secrets, scheme: config.scheme, id: d.id, header: config.header })
  // The standard scheme signs webhook-id; the others carry the id in the signed body (what a receiver must key on)
  // and send the header besides, unsigned, for receivers that log or route by it.
  const headers = config.scheme === 'standard' ? { ...kJson, ...signed } : { ...kJson, ...signed, 'webhook-id': d.id }
  let retryAfter: number | undefined
  try {
    const res = await registry.client(d.service).request('POST', d.path, { body: d.body, headers, retry: false, throwHttpErrors: false })
    outcome.status = res.status
    retryAfter = parseRetryAfter(res.headers['retry-after'])
    await res.dump().catch(() => {})
  } catch (err) {
    outcome.error = String((err as { code?: unknown }).code ?? (err as Error).name ?? 'Error')
    // A ClientClosedError before the registry closed is a service not open yet (a send before `ready`): retried.
    if (isClosing()) return { verdict: 'closed', retryAfter }
  }
  return { verdict: verdictOf(outcome.status), retryAfter }
}

/** 2xx delivered; 408, 429, 5xx and no answer retried; 410 gone; 3xx and other 4xx rejected. */
export function verdictOf (status: number | undefined): Verdict {
  if (status === undefined) return 'retry'
  if (status >= 200 && status < 300) return 'delivered'
  if (status === 410) return 'gone'
  return status === 408 || status === 429 || status >= 500 ? 'retry' : 'rejected'
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

/** What `sendAndWait` rejects with when the delivery of `id` ended for `reason` after `attempts`. */
export function deliveryError (service: string, id: string, reason: WebhookDeliveryFailure, attempts: WebhookAttempt[]): WebhookDeliveryError {
  if (reason === 'disabled') return disabledError(service, id, attempts)
  const last = attempts[attempts.length - 1]
  const what = last === undefined ? '' : last.status !== undefined ? `, last answer ${last.status}` : `, last error ${last.error ?? ''}`
  const err = new WebhookDeliveryError(`webhook ${id} to ${service}: not delivered: ${kWhy[reason]} (${attempts.length} attempt${attempts.length === 1 ? '' : 's'}${what})`)
  err.webhookId = id
  err.reason = reason
  err.outcomes = [...attempts]
  err.service = service
  err.attempts = attempts.length
  if (reason === 'closed') err.statusCode = 503
  return err
}

/** What `send` rejects with while a 410 keeps `service` disabled (and a queued event meets when its turn comes). */
export function disabledError (service: string, id: string, attempts: WebhookAttempt[]): WebhookDeliveryError {
  const err = new WebhookDeliveryError(`webhook ${id} to ${service}: ${kWhy.disabled}`)
  err.webhookId = id
  err.reason = 'disabled'
  err.outcomes = [...attempts]
  err.service = service
  err.attempts = attempts.length
  err.statusCode = 503
  return err
}

/** The dead letter of `d`, ended for `reason` after `attempts`. */
export function letterOf (d: Prepared, reason: WebhookDeliveryFailure, attempts: WebhookAttempt[], failedAt = Date.now()): DeadLetter {
  return { id: d.id, service: d.service, path: d.path, type: d.type, body: d.body, reason, attempts: [...attempts], createdAt: d.createdAt, failedAt }
}

/** What `replay` rejects with when there is no dead letter `id` (or a concurrent replay took it). */
export function noLetter (id: string): InvalidRequestError {
  return new InvalidRequestError(`webhooks: no dead letter ${JSON.stringify(String(id)).slice(0, 80)}`)
}

/**
 * The library's own log lines about what its policies did (retries, breakers, fallbacks, bulkhead and rate-limit
 * waits), written by one subscriber of the diagnostics channels rather than by the policies: a policy publishes, and
 * this turns the message into a pino line on the call's own logger (`message.log`: the inbound request's, with its
 * `reqId`, bound to `{ service }`), so two apps in one process each log only their own calls. A registry subscribes it
 * when it opens and lets go when it closes (`retainLogSubscriber`): one subscription however many registries (and
 * copies of this package) are open.
 *
 * It subscribes only to rare events, never to the call's or the attempts' channels: an app that logs costs its calls
 * nothing.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import {
  breakerState, bulkheadQueued, bulkheadRejected, cacheServed, fallbackServed, rateLimitDelayed, rateLimitRejected, retryRefused,
  retryScheduled
} from './channels'
import type {
  BreakerStateMessage, BulkheadMessage, CacheMessage, FallbackServedMessage, RateLimitMessage, RetryDelaySource, RetryRefusedMessage,
  RetryScheduledMessage
} from './messages'

const kAsks: Record<RetryDelaySource, string> = {
  backoff: '',
  delay: '',
  'retry-after': ' as Retry-After asks',
  'x-ratelimit-reset': ' as X-RateLimit-Reset asks'
}

/**
 * The trace fields of a line (`trace_id`, `span_id`, `trace_flags`, as @opentelemetry/instrumentation-pino writes
 * them) while a span is active: telemetry sets the source (`setTraceFields`). pino lets the line's own fields win over
 * its mixin's, so a logger that instrumentation-pino patched gets the same values once.
 */
function withTrace (fields: Record<string, unknown>): Record<string, unknown> {
  const trace = subscription().traceFields?.()
  return trace === undefined ? fields : Object.assign(fields, trace)
}

/** `retry:scheduled`: `retrying GET billing after status 503 (attempt 1 of 3 failed), next in 200 ms`, at warn. */
function retryLine (message: unknown): void {
  const m = message as RetryScheduledMessage
  m.log.warn(withTrace({
    method: m.method, path: m.path, upstream: m.upstream, attempt: m.attempt, of: m.maxAttempts, delayMs: m.delayMs,
    delaySource: m.delaySource, reason: m.reason
  }), `retrying ${m.method} ${m.service} after ${m.reason} (attempt ${m.attempt} of ${m.maxAttempts} failed), next in ${m.delayMs} ms${kAsks[m.delaySource]}`)
}

/** Why a retry was refused, in words (`why` of the line). */
function refusalText (m: RetryRefusedMessage): string {
  switch (m.refusal) {
    case 'attempts': return 'no retries left'
    case 'retry-after': return `the upstream asks to wait ${Math.ceil(m.delayMs as number)} ms, more than maxRetryAfter`
    case 'deadline': return `a wait of ${m.delayMs as number} ms would pass the deadline`
    case 'breaker': return `the circuit breaker is open for ${m.retryAfterMs as number} ms more: no attempt can be made`
    case 'budget': return 'retry budget exhausted'
  }
}

/** `retry:refused`: `giving up GET billing after status 503: no retries left`, at warn. */
function giveUpLine (message: unknown): void {
  const m = message as RetryRefusedMessage
  const why = refusalText(m)
  const fields: Record<string, unknown> = {
    method: m.method, path: m.path, upstream: m.upstream, attempt: m.attempt, of: m.maxAttempts, reason: m.reason, why
  }
  if (m.refusal === 'breaker') {
    fields.breaker = 'open'
    fields.retryAfterMs = m.retryAfterMs
  }
  m.log.warn(withTrace(fields), `giving up ${m.method} ${m.service} after ${m.reason}: ${why}`)
}

/** `breaker:state`: an opening at warn, half-opening and closing at info, on the breaker's logger. */
function breakerLine (message: unknown): void {
  const m = message as BreakerStateMessage
  const of = m.upstream === undefined ? '' : ` of ${m.upstream}`
  if (m.state === 'open') {
    const failFast = m.upstream === undefined ? 'calls fail fast' : 'calls go to the other upstreams'
    if (m.remote) {
      m.log.warn(withTrace({ breaker: 'open', remote: true, resetAfter: m.resetAfter, lastFailure: m.lastFailure }),
        `circuit breaker${of} opened: another instance's opened (last: ${m.lastFailure ?? 'unknown'}): ${failFast} for ${m.resetAfter as number} ms`)
    } else if (m.reopened) {
      m.log.warn(withTrace({ breaker: 'open', probe: 'failed', resetAfter: m.resetAfter, lastFailure: m.lastFailure }),
        `circuit breaker${of} opened again: a probe failed (${m.lastFailure ?? 'unknown'}): ${failFast} for ${m.resetAfter as number} ms`)
    } else {
      m.log.warn(withTrace({ breaker: 'open', failures: m.failures, calls: m.calls, resetAfter: m.resetAfter, lastFailure: m.lastFailure }),
        `circuit breaker${of} opened after ${m.failures as number} failures of ${m.calls as number} calls (last: ${m.lastFailure ?? 'unknown'}): ${failFast} for ${m.resetAfter as number} ms`)
    }
  } else if (m.state === 'halfOpen') {
    m.log.info(withTrace({ breaker: 'halfOpen' }), m.probes === undefined || m.probes === 1
      ? `circuit breaker${of} half-open: the next call is a probe`
      : `circuit breaker${of} half-open: the next ${m.probes} calls, one at a time, are probes`)
  } else {
    m.log.info(withTrace({ breaker: 'closed' }), `circuit breaker${of} closed`)
  }
}

/** `fallback:served`, at debug. */
function fallbackLine (message: unknown): void {
  const m = message as FallbackServedMessage
  const err = (m.error as { code?: unknown } | null)?.code
  m.log.debug(m.status === undefined ? { err, method: m.call.method } : { err, status: m.status, method: m.call.method },
    'call failed: serving the fallback')
}

/** `cache:served`: a stale entry served because the upstream failed, at warn; nothing for the other outcomes. */
function cacheLine (message: unknown): void {
  const m = message as CacheMessage
  if (m.cache !== 'stale' || (m.error === undefined && m.upstreamStatus === undefined)) return
  const err = (m.error as { code?: unknown } | undefined)?.code
  m.log.warn({ method: m.call.method, path: m.call.path, age: m.age, ...(m.upstreamStatus !== undefined ? { status: m.upstreamStatus } : { err }) },
    'served a stale cached response: the upstream failed')
}

/** `bulkhead:queued`, at debug. */
function queuedLine (message: unknown): void {
  const m = message as BulkheadMessage
  const call = m.call
  m.log.debug({ method: call.method, path: call.path, active: m.active, queued: m.queued },
    `bulkhead: ${call.method} ${m.service} waits for a slot (${m.active} of ${m.maxConcurrent} in flight, ${m.queued} of ${m.maxQueue} waiting)`)
}

/** `bulkhead:rejected`, at debug: the caller gets the error (`BulkheadRejectedError`, `TimeoutError`) to log. */
function bulkheadRejectedLine (message: unknown): void {
  const m = message as BulkheadMessage
  const call = m.call
  const why = m.reason === 'full'
    ? `queue full (${m.maxConcurrent} in flight, ${m.queued} of ${m.maxQueue} waiting)`
    : `no slot within queueTimeout (waited ${Math.round(m.waited)} ms)`
  m.log.debug({ method: call.method, path: call.path, reason: m.reason, waited: Math.round(m.waited) },
    `bulkhead: ${call.method} ${m.service} refused: ${why}`)
}

/** `rate-limit:delayed`, at debug. */
function delayedLine (message: unknown): void {
  const m = message as RateLimitMessage
  const call = m.call
  const delayMs = Math.ceil(m.delayMs)
  m.log.debug({ method: call.method, path: call.path, delayMs },
    `rate limit: ${call.method} ${m.service} waits ${delayMs} ms for a permit`)
}

/** `rate-limit:rejected`, at debug: the caller gets the error (`RateLimitedError`) to log. */
function rateLimitedLine (message: unknown): void {
  const m = message as RateLimitMessage
  const call = m.call
  const delayMs = Math.ceil(m.delayMs)
  const maxWait = Math.round(m.maxWait)
  m.log.debug({ method: call.method, path: call.path, delayMs, maxWait },
    `rate limit: ${call.method} ${m.service} refused (next permit in ${delayMs} ms, longest wait ${maxWait} ms)`)
}

/** @internal What the subscriber listens to: each channel and its line. */
export const kLogLines: ReadonlyArray<{ name: string, line: (message: unknown) => void }> = [
  { name: retryScheduled.name as string, line: retryLine },
  { name: retryRefused.name as string, line: giveUpLine },
  { name: breakerState.name as string, line: breakerLine },
  { name: fallbackServed.name as string, line: fallbackLine },
  { name: cacheServed.name as string, line: cacheLine },
  { name: bulkheadQueued.name as string, line: queuedLine },
  { name: bulkheadRejected.name as string, line: bulkheadRejectedLine },
  { name: rateLimitDelayed.name as string, line: delayedLine },
  { name: rateLimitRejected.name as string, line: rateLimitedLine }
]

/**
 * The subscription, shared through `globalThis` by every copy of this package in the process (two versions installed
 * side by side publish on the same channel names): one set of lines, however many copies and registries are open.
 */
interface Subscription {
  /** Registries open now, of any copy. */
  holders: number
  /** The lines subscribed, by whichever copy subscribed them: the same functions are unsubscribed. */
  lines: typeof kLogLines | undefined
  /** The active span's trace fields for retry, give-up and breaker lines (`setTraceFields`), read by the lines. */
  traceFields?: (() => Record<string, string> | undefined) | undefined
  /** Each copy's source of trace fields while it traces: `traceFields` reads them, so one copy's stop keeps the others'. */
  traceSources?: Map<object, () => Record<string, string> | undefined>
}

const kSubscription = Symbol.for('fastify-http-services.log-subscriber')

/** This copy of the package, as the key of its source of trace fields. */
const kCopy = {}

function subscription (): Subscription {
  const g = globalThis as { [kSubscription]?: Subscription }
  g[kSubscription] ??= { holders: 0, lines: undefined }
  return g[kSubscription]
}

/** A registry opens: the first one subscribes the log lines. */
export function retainLogSubscriber (): void {
  const s = subscription()
  if (s.holders++ > 0) return
  s.lines = kLogLines
  for (const { name, line } of kLogLines) diagnosticsChannel.subscribe(name, line)
}

/** A registry closes: the last one unsubscribes them, leaving no listener behind. */
export function releaseLogSubscriber (): void {
  const s = subscription()
  if (s.holders === 0 || --s.holders > 0) return
  for (const { name, line } of s.lines ?? []) diagnosticsChannel.unsubscribe(name, line)
  s.lines = undefined
}

/**
 * Where retry, give-up and breaker lines read the active span's `trace_id`, `span_id` and `trace_flags` (telemetry
 * sets it while it traces; `undefined`: none). Shared by every copy, like the lines: each copy's source is kept until
 * that copy stops tracing, so the last registry of one copy closing leaves another copy's fields in place.
 */
export function setTraceFields (source: (() => Record<string, string> | undefined) | undefined): void {
  const s = subscription()
  const sources = s.traceSources ??= new Map()
  if (source === undefined) sources.delete(kCopy)
  else sources.set(kCopy, source)
  s.traceFields = sources.size === 0 ? undefined : sources.size === 1 ? sources.values().next().value : () => firstTraceFields(sources)
}

/** The first copy's fields that a span is active for (each copy may load its own `@opentelemetry/api`). */
function firstTraceFields (sources: Map<object, () => Record<string, string> | undefined>): Record<string, string> | undefined {
  for (const source of sources.values()) {
    const fields = source()
    if (fields !== undefined) return fields
  }
  return undefined
}

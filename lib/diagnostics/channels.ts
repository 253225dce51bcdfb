/**
 * The `node:diagnostics_channel` channels every call publishes on: the events of the call (a TracingChannel), of each
 * request it sends, and of the policies it passes through. They are public API (README, "Diagnostics channels"): the
 * plugin's log lines subscribe to them, and so may `stats()`, telemetry, a status page, users and APM vendors.
 *
 * A channel costs nothing while nobody subscribes: a publisher checks `hasSubscribers` before it builds a message
 * (`./publish`). The channel objects are made once, here, and held for the life of the process: Node holds channels
 * weakly, and a publisher must reach the very object a subscriber subscribed to.
 */
import diagnosticsChannel from 'node:diagnostics_channel'

/** The prefix of every channel name. */
export const kChannelPrefix = 'fastify-http-services'

/**
 * A call, from the client method to its outcome, as a TracingChannel: `tracing:fastify-http-services:call:start`,
 * `:end` (the synchronous part returned), `:asyncStart` and `:asyncEnd` (the call settled), `:error` (it failed). The
 * message is a `CallMessage`, the same object on every event of the call. `start` runs the call with the stores bound
 * to it (`bindStore`), so its async work inherits them.
 */
export const callChannel = diagnosticsChannel.tracingChannel(`${kChannelPrefix}:call`)

/**
 * A request about to be sent: once per request on the wire (each retry, hedge and redirect hop). Subscribers may add
 * request headers (`AttemptMessage.addHeader`) while it is published.
 */
export const attemptStart = diagnosticsChannel.channel(`${kChannelPrefix}:attempt:start`)
/** A request's response headers arrived (`status`, `timeToHeaders`). */
export const attemptHeaders = diagnosticsChannel.channel(`${kChannelPrefix}:attempt:headers`)
/** A request ended with a response (`status`, `duration`): for *Json calls once the body is read. */
export const attemptEnd = diagnosticsChannel.channel(`${kChannelPrefix}:attempt:end`)
/** A request failed (`error`: the typed error; `duration`). */
export const attemptError = diagnosticsChannel.channel(`${kChannelPrefix}:attempt:error`)

/** The retry policy will send the call again after `delayMs` (`RetryScheduledMessage`). */
export const retryScheduled = diagnosticsChannel.channel(`${kChannelPrefix}:retry:scheduled`)
/** The retry policy would retry, but may not (`RetryRefusedMessage`): attempts, deadline, breaker, budget … */
export const retryRefused = diagnosticsChannel.channel(`${kChannelPrefix}:retry:refused`)

/** A circuit breaker changed state (`BreakerStateMessage`). */
export const breakerState = diagnosticsChannel.channel(`${kChannelPrefix}:breaker:state`)

/** A call waits for a bulkhead slot (`BulkheadMessage`). */
export const bulkheadQueued = diagnosticsChannel.channel(`${kChannelPrefix}:bulkhead:queued`)
/** A call that waited got its bulkhead slot (`BulkheadMessage.waited`). */
export const bulkheadAdmitted = diagnosticsChannel.channel(`${kChannelPrefix}:bulkhead:admitted`)
/** The bulkhead refused a call: its queue was full, or the call's `queueTimeout` passed (`BulkheadMessage.reason`). */
export const bulkheadRejected = diagnosticsChannel.channel(`${kChannelPrefix}:bulkhead:rejected`)

/** A call waits `delayMs` for a rate-limit permit (`RateLimitMessage`). */
export const rateLimitDelayed = diagnosticsChannel.channel(`${kChannelPrefix}:rate-limit:delayed`)
/** The rate limiter refused a call: no permit within its longest wait (`RateLimitMessage`). */
export const rateLimitRejected = diagnosticsChannel.channel(`${kChannelPrefix}:rate-limit:rejected`)

/** The hedging policy sent another attempt of a call still waiting for its answer (`HedgeFiredMessage`). */
export const hedgeFired = diagnosticsChannel.channel(`${kChannelPrefix}:hedge:fired`)
/** A failed call was answered by its fallback (`FallbackServedMessage`). */
export const fallbackServed = diagnosticsChannel.channel(`${kChannelPrefix}:fallback:served`)
/** A call of a service with `cache` was answered, and what the cache made of it (`CacheMessage`). */
export const cacheServed = diagnosticsChannel.channel(`${kChannelPrefix}:cache:served`)

/** The name of every channel, the call's TracingChannel's five included, in the README's order. */
export const kChannelNames: readonly string[] = [
  ...(['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map((event) => callChannel[event].name as string),
  ...[
    attemptStart, attemptHeaders, attemptEnd, attemptError, retryScheduled, retryRefused, breakerState,
    bulkheadQueued, bulkheadAdmitted, bulkheadRejected, rateLimitDelayed, rateLimitRejected, hedgeFired, fallbackServed,
    cacheServed
  ].map((channel) => channel.name as string)
]

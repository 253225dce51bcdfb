import type { FastifyError } from '@fastify/error'
import { defineError } from './define-error'

/** The phase of a call that ran out of time. */
export type TimeoutPhase = 'connect' | 'headers' | 'body' | 'total' | 'attempt' | 'queue'

/** Fields every error of this library may carry. */
export interface HttpServicesError extends FastifyError {
  /** The service the call was made to. */
  service?: string
  /** Upper-case HTTP method of the call. */
  method?: string
  /** Path and query of the call, with query values redacted. */
  url?: string
  /** How many attempts were made (1 when there was no retry). */
  attempts?: number
  /** Seconds after which a new call may succeed, when known. */
  retryAfter?: number
  /** Headers Fastify's error handler copies to the reply (e.g. `retry-after`). */
  headers?: Record<string, string>
  /** The service's circuit breaker when the call failed, set only when it was not closed (`open`: nowhere to go). */
  breaker?: 'open' | 'halfOpen'
}

/** The downstream answered with an error status (>= 400) and `throwHttpErrors` was on. */
export interface HttpStatusError extends HttpServicesError {
  /** Status code the downstream answered with. */
  status: number
  /** Response headers of the downstream. Not enumerable, so a logged error never shows them (`set-cookie` …). */
  responseHeaders: Record<string, string | string[] | undefined>
  /** Human-readable error detail parsed from the body (problem+json, `{error}`, `{message}`, text). */
  detail?: string
  /** The parsed body, when it was JSON (at most `errorBodyLimit` bytes were read). */
  body?: unknown
}

export interface TimeoutError extends HttpServicesError {
  /** Which timeout fired. */
  phase: TimeoutPhase
  /** The limit in milliseconds. */
  timeout?: number
}

export interface ConnectionError extends HttpServicesError {
  /** The system or undici error code (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET …). */
  errno?: string
}

export interface TlsError extends HttpServicesError {
  /** The TLS error code from Node (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID). */
  errno?: string
}

export interface ResponseTooLargeError extends HttpServicesError {
  status: number
  limit: number
}

export interface ResponseParseError extends HttpServicesError {
  status: number
  contentType?: string
  /** The first 200 characters of the body. */
  snippet: string
}

/** A compressed response body could not be decoded (corrupt or truncated gzip, deflate or br data). */
export interface DecompressError extends HttpServicesError {
  status: number
  /** The response's `content-encoding`, e.g. `gzip`. */
  encoding: string
}

export interface UnknownServiceError extends HttpServicesError {
  known: string[]
}

export interface InvalidOptionsError extends HttpServicesError {
  /** Dotted path of the offending option, e.g. `services.billing.timeout.total`. */
  key: string
}

/**
 * Credentials for a call could not be had: an `auth.bearer` function threw or returned no usable token (and, with
 * OAuth2, a token endpoint refused or failed). Never holds a secret.
 */
export interface AuthError extends HttpServicesError {
  /** The OAuth2 error code from the token endpoint (RFC 6749 §5.2), when it sent one. */
  error?: string
  /** The token endpoint's `error_description`, capped and without control characters, when it sent one. */
  error_description?: string
}

/** Which check of an inbound webhook failed (`WebhookVerificationError.reason`). */
export type WebhookFailure =
  | 'missing-id' | 'missing-timestamp' | 'missing-signature'
  | 'malformed-timestamp' | 'malformed-signature' | 'invalid-json'
  | 'timestamp-too-old' | 'timestamp-in-future' | 'signature-mismatch'

/**
 * An inbound webhook failed verification: `statusCode` 400 for missing or malformed headers (or a body that is not
 * JSON), 401 for a signature that matches no secret or a timestamp outside the tolerance. Never holds a secret or the
 * expected signature.
 */
export interface WebhookVerificationError extends HttpServicesError {
  /** The check that failed. */
  reason: WebhookFailure
}

/** Why a webhook delivery ended without success (`WebhookDeliveryError.reason`, a dead letter's `reason`). */
export type WebhookDeliveryFailure = 'rejected' | 'gone' | 'exhausted' | 'disabled' | 'closed'

/** One attempt of a webhook delivery, as dead letters and `WebhookDeliveryError.outcomes` list it. */
export interface WebhookAttempt {
  /** 1 for the first attempt. */
  attempt: number
  /** When the attempt started (Unix time, ms). */
  at: number
  /** The receiver's status, when it answered. */
  status?: number
  /** The error's code (or name) when no usable answer came (`HTTP_SERVICES_ERR_CONNECTION` …). */
  error?: string
}

/** A webhook delivery ended without success: `sendAndWait` rejects with it. */
export interface WebhookDeliveryError extends HttpServicesError {
  /** The event's `webhook-id`. */
  webhookId: string
  /** `rejected` (3xx or a 4xx that is not retried), `gone` (410: the endpoint is now disabled), `exhausted` (the schedule ran out), `disabled` (the endpoint was disabled), `closed` (the registry closed first). */
  reason: WebhookDeliveryFailure
  /** Every attempt, in order. */
  outcomes: WebhookAttempt[]
}

/** A webhook receiver's handler threw: the reply is 500 so the sender retries; `cause` is what the handler threw. */
export interface WebhookHandlerError extends HttpServicesError {
  /** The event's id, when it had one. */
  webhookId?: string
}

export interface CircuitOpenError extends HttpServicesError {}
export interface BulkheadRejectedError extends HttpServicesError {}
export interface RateLimitedError extends HttpServicesError {}
export interface ForbiddenUrlError extends HttpServicesError {}
export interface ClientClosedError extends HttpServicesError {}
export interface RequestAbortedError extends HttpServicesError {}
export interface InvalidRequestError extends HttpServicesError {}

/** A constructor of one of this library's errors. `instanceof` works across duplicate installs. */
export interface HttpServicesErrorClass<E extends HttpServicesError> {
  new (message: string, options?: { cause?: unknown }): E
  readonly prototype: E
}

// Each class is named after itself (`err.name`, and pino's `type` in logs), and its `cause` is not enumerable: see
// `./define-error`.
function define<E extends HttpServicesError> (name: string, code: string, statusCode: number, Base: unknown = Error): HttpServicesErrorClass<E> {
  return defineError<E>(name, code, statusCode, Base)
}

/** Base of every error this library throws. */
export const HttpServicesError = define<HttpServicesError>('HttpServicesError', 'HTTP_SERVICES_ERR', 500)
export const HttpStatusError = define<HttpStatusError>('HttpStatusError', 'HTTP_SERVICES_ERR_STATUS', 502, HttpServicesError)
/** Base of the transport failures (no usable response from the downstream). */
export const TransportError = define<HttpServicesError>('TransportError', 'HTTP_SERVICES_ERR_TRANSPORT', 502, HttpServicesError)
export const TimeoutError = define<TimeoutError>('TimeoutError', 'HTTP_SERVICES_ERR_TIMEOUT', 504, TransportError)
export const ConnectionError = define<ConnectionError>('ConnectionError', 'HTTP_SERVICES_ERR_CONNECTION', 502, TransportError)
export const TlsError = define<TlsError>('TlsError', 'HTTP_SERVICES_ERR_TLS', 502, TransportError)
export const ResponseTooLargeError = define<ResponseTooLargeError>('ResponseTooLargeError', 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', 502, HttpServicesError)
export const ResponseParseError = define<ResponseParseError>('ResponseParseError', 'HTTP_SERVICES_ERR_RESPONSE_PARSE', 502, HttpServicesError)
export const DecompressError = define<DecompressError>('DecompressError', 'HTTP_SERVICES_ERR_DECOMPRESS', 502, HttpServicesError)
export const ForbiddenUrlError = define<ForbiddenUrlError>('ForbiddenUrlError', 'HTTP_SERVICES_ERR_FORBIDDEN_URL', 500, HttpServicesError)
export const InvalidRequestError = define<InvalidRequestError>('InvalidRequestError', 'HTTP_SERVICES_ERR_INVALID_REQUEST', 500, HttpServicesError)
export const UnknownServiceError = define<UnknownServiceError>('UnknownServiceError', 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE', 500, HttpServicesError)
export const ClientClosedError = define<ClientClosedError>('ClientClosedError', 'HTTP_SERVICES_ERR_CLIENT_CLOSED', 503, HttpServicesError)
export const RequestAbortedError = define<RequestAbortedError>('RequestAbortedError', 'HTTP_SERVICES_ERR_ABORTED', 499, HttpServicesError)
export const InvalidOptionsError = define<InvalidOptionsError>('InvalidOptionsError', 'HTTP_SERVICES_ERR_INVALID_OPTIONS', 500, HttpServicesError)
export const AuthError = define<AuthError>('AuthError', 'HTTP_SERVICES_ERR_AUTH', 502, HttpServicesError)
export const CircuitOpenError = define<CircuitOpenError>('CircuitOpenError', 'HTTP_SERVICES_ERR_CIRCUIT_OPEN', 503, HttpServicesError)
export const BulkheadRejectedError = define<BulkheadRejectedError>('BulkheadRejectedError', 'HTTP_SERVICES_ERR_BULKHEAD_REJECTED', 503, HttpServicesError)
export const RateLimitedError = define<RateLimitedError>('RateLimitedError', 'HTTP_SERVICES_ERR_RATE_LIMITED', 503, HttpServicesError)
export const WebhookVerificationError = define<WebhookVerificationError>('WebhookVerificationError', 'HTTP_SERVICES_ERR_WEBHOOK_VERIFY', 401, HttpServicesError)
export const WebhookDeliveryError = define<WebhookDeliveryError>('WebhookDeliveryError', 'HTTP_SERVICES_ERR_WEBHOOK_DELIVERY', 502, HttpServicesError)
export const WebhookHandlerError = define<WebhookHandlerError>('WebhookHandlerError', 'HTTP_SERVICES_ERR_WEBHOOK_HANDLER', 500, HttpServicesError)

/** Where a call was going; copied onto every error it produces. */
export interface CallTarget {
  service: string
  method: string
  /** Path and query as sent; query values are redacted before they reach an error. */
  path: string
}

/** `true` for any error thrown by this library. */
export function isHttpServicesError (err: unknown): err is HttpServicesError {
  return err instanceof HttpServicesError
}

const kRedactedQuery = /=([^&#]*)/g

/** Path with every query value replaced by `***`, so tokens in query strings never reach logs or errors. */
export function redactPath (path: string): string {
  const q = path.indexOf('?')
  if (q === -1) return path
  return path.slice(0, q) + path.slice(q).replace(kRedactedQuery, '=***')
}

/** Stamps the call's target on an error. Mutates and returns it. */
export function stamp<E extends HttpServicesError> (err: E, target: CallTarget | undefined, extra?: Partial<E>): E {
  if (target !== undefined) {
    if (err.service === undefined) err.service = target.service
    if (err.method === undefined) err.method = target.method
    if (err.url === undefined) err.url = redactPath(target.path)
  }
  if (extra !== undefined) Object.assign(err, extra)
  return err
}

/** `"GET billing /invoices?x=***"`: the prefix used in error messages. */
export function describe (target: CallTarget): string {
  return `${target.method} ${target.service} ${redactPath(target.path)}`
}

const callerTimeouts = new WeakSet<object>()

/**
 * Marks a timeout whose limit the caller chose (a call's own `timeout`) or the inbound request's deadline set: it
 * says nothing about the upstream's health, so a circuit breaker does not count it (a client sending a 1 ms
 * deadline header must not open the breaker for every caller).
 */
export function markCallerTimeout<E extends object> (err: E): E {
  callerTimeouts.add(err)
  return err
}

/** Whether `err` is a timeout marked by `markCallerTimeout`. */
export function isCallerTimeout (err: unknown): boolean {
  return typeof err === 'object' && err !== null && callerTimeouts.has(err)
}

/** Sets `retryAfter` (seconds) and the matching `retry-after` header Fastify will send. */
export function withRetryAfter<E extends HttpServicesError> (err: E, seconds: number | undefined): E {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return err
  const s = Math.ceil(seconds)
  err.retryAfter = s
  err.headers = { ...err.headers, 'retry-after': String(s) }
  return err
}

import type { Readable } from 'node:stream'
import type { Fallback, RetryOptions, TimeoutOptions } from './config/types'
import type { MultipartFields } from './multipart'

/** A query string value; arrays repeat the key, `undefined` and `null` drop it. */
export type QueryValue = string | number | boolean | null | undefined | ReadonlyArray<string | number | boolean>

/** The timeouts a call may set for itself: every phase but `connect`, which belongs to the service's pool. */
export type CallTimeoutOptions = Omit<TimeoutOptions, 'connect'>

/**
 * Options of one call. Each overrides the service option of the same name. A key that is none of these (a typo in
 * JavaScript) rejects the call with `InvalidRequestError`.
 */
export interface CallOptions {
  /** Query parameters, encoded and appended to the path. */
  query?: Record<string, QueryValue> | URLSearchParams
  /**
   * Values for `:name` placeholders in the path, percent-encoded. Every placeholder needs a value; `.`, `..`, `''`
   * and a value holding an encoded dot segment are refused (`ForbiddenUrlError`).
   */
  params?: Record<string, string | number>
  /**
   * Extra request headers; `undefined` values are dropped. Values with CR, LF or NUL are refused, and so is `host`
   * (only the service's `headers` may set it). A `content-length` must match the body.
   */
  headers?: Record<string, string | number | undefined>
  /** A value sent as JSON (`content-type: application/json`). */
  json?: unknown
  /** Fields sent as `application/x-www-form-urlencoded`. */
  form?: Record<string, QueryValue> | URLSearchParams
  /** A raw body. A stream body is sent once and never retried. */
  body?: string | Buffer | Uint8Array | Readable
  /**
   * Fields and files sent as `multipart/form-data` (its `content-type`, with a random boundary, replaces any other).
   * Files may be Buffers, Blobs or streams; contents are streamed, never buffered whole. A form with a stream part is
   * sent once and never retried; one of Buffers and Blobs follows the normal retry rules.
   */
  multipart?: FormData | MultipartFields
  /**
   * Timeouts for this call; a number means `total`. `connect` is not among them: it belongs to the service's pool
   * (a call passing it is refused with `InvalidOptionsError`).
   */
  timeout?: number | CallTimeoutOptions
  /** Aborts the call; the call then fails with `RequestAbortedError` (its `cause` is the signal's reason). */
  signal?: AbortSignal
  /** Reject a status >= 400 with `HttpStatusError` (default: the service's `throwHttpErrors`, itself `true`). */
  throwHttpErrors?: boolean
  /** Retries for this call: a number means `attempts`; `false` or `0` disables them. */
  retry?: number | false | RetryOptions
  /** Runs instead of failing (breaker open or final failure). */
  fallback?: Fallback
  /**
   * Decode a compressed body (default: the service's `decompress`, itself `true`). `false` passes the body through
   * with its `content-encoding` and, unless the call sets `accept-encoding`, does not ask for compression.
   */
  decompress?: boolean
  /**
   * Sends `Authorization: Bearer <token>` instead of the service's `auth` (and of a forwarded header): it wins over
   * everything. A secret: never shown in logs or errors. A non-empty string without CR, LF or NUL.
   */
  token?: string
  /** `false` sends none of the service's credentials (`auth`, `defaults.auth`, a forwarded one) with this call. */
  auth?: false
}

/** Options of the `*Json` helpers: the body is given as an argument instead of `json`. */
export type JsonCallOptions = Omit<CallOptions, 'json' | 'body' | 'form' | 'multipart'>

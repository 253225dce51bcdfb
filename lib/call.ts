import { Readable } from 'node:stream'
import { InvalidRequestError } from './errors'
import type { CallSignal } from './call-signal'
import type { CallOptions } from './client-types'
import type { CallContext, Logger, RequestBody, ServiceRuntime } from './pipeline/types'
import { encodeMultipart } from './multipart'
import { encodeQuery } from './request-target'
import { copyHeaders } from './copy-headers'

// RFC 9110 token characters for header names.
const kHeaderName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const kBadHeaderValue = /[\r\n\0]/
const kLength = /^\d{1,15}$/

/** What binds a client to where its calls come from: an inbound Fastify request, or nothing. */
export interface ClientScope {
  /** Logger the calls log with (the request's, carrying `reqId`). */
  readonly log: Logger
  /** Aborts every call of the scope (the inbound request's client went away); created on first use. */
  signal: () => CallSignal | undefined
  /** `performance.now()` time by which calls must end; `Infinity` when none. */
  readonly deadline: number
  /**
   * The headers of the scope's calls to a service: `base` (the service's) with the inbound request's id and the
   * service's `forwardHeaders` added; `base` itself when there is nothing to add.
   */
  headersFor: (base: Record<string, string>, forward: string[]) => Record<string, string>
}

/** Throws `InvalidRequestError` for a header name that is not a token or a value holding CR, LF or NUL. */
export function checkHeader (service: string, name: string, value: string): void {
  if (!kHeaderName.test(name)) {
    throw new InvalidRequestError(`${service}: invalid header name ${JSON.stringify(name)}`)
  }
  if (kBadHeaderValue.test(value)) {
    throw new InvalidRequestError(`${service}: header ${name} holds a CR, LF or NUL character`)
  }
}

/** One logical call through a service's pipeline. */
export class Call implements CallContext {
  readonly service: ServiceRuntime
  readonly call: CallContext
  method: string
  path: string
  readonly route: string
  headers: Record<string, string>
  body: RequestBody
  signal: CallSignal | undefined
  deadline: number
  attempt = 1
  headersTimeout: number
  bodyTimeout: number
  bufferBody = false
  upstream: { readonly origin: string } | undefined
  readonly options: CallOptions
  /** Declared so that every call has the same shape, whether or not something subscribed when it was made. */
  diagnostics: object | undefined = undefined
  private ownHeaders: boolean
  private logger: Logger | undefined = undefined
  private readonly parentLog: Logger

  constructor (
    service: ServiceRuntime, method: string, path: string, route: string, headers: Record<string, string>,
    ownHeaders: boolean, body: RequestBody, options: CallOptions, parentLog: Logger
  ) {
    this.service = service
    this.call = this
    this.method = method
    this.path = path
    this.route = route
    this.headers = headers
    this.ownHeaders = ownHeaders
    this.body = body
    this.signal = undefined
    this.deadline = Infinity
    const t = service.options.timeout
    this.headersTimeout = t.headers
    this.bodyTimeout = t.body
    this.upstream = undefined
    this.options = options
    this.parentLog = parentLog
  }

  /** `false` when the body is a stream: it cannot be sent twice. */
  get replayable (): boolean {
    return !(this.body instanceof Readable)
  }

  get log (): Logger {
    if (this.logger === undefined) this.logger = this.parentLog.child({ service: this.service.name })
    return this.logger
  }

  setHeader (name: string, value: string): void {
    if (!this.ownHeaders) {
      this.headers = copyHeaders(this.headers)
      this.ownHeaders = true
    }
    this.headers[name] = value
  }
}

/** Merges the caller's headers over `base`, checking each. Returns `base` itself when there is nothing to add. */
export function mergeHeaders (
  service: string, base: Record<string, string>, extra: Record<string, string | number | undefined> | undefined
): { headers: Record<string, string>, copied: boolean } {
  if (extra === undefined) return { headers: base, copied: false }
  const headers = copyHeaders(base)
  for (const key of Object.keys(extra)) {
    const value = extra[key]
    if (value === undefined) continue
    const name = key.toLowerCase()
    const text = String(value)
    checkHeader(service, name, text)
    // The Host decides which site of the upstream (and, through a forward proxy, which upstream) gets the call: only
    // the service's configuration may set it, never a value that may come from the caller's input.
    if (name === 'host') throw new InvalidRequestError(`${service}: header host cannot be set per call (set it in the service's headers)`)
    headers[name] = text
  }
  return { headers, copied: true }
}

/**
 * Throws `InvalidRequestError` when the caller's `content-length` is not a length, or differs from the body's (a
 * string or bytes) or announces a body the call does not have. undici would send the wrong framing, send
 * `content-length: 0` instead, or fail the call as if the upstream had; a stream's length is only known once sent:
 * undici checks it then (`transport-errors.ts` maps its error to `InvalidRequestError` too).
 */
export function checkContentLength (service: string, declared: string, body: RequestBody): void {
  if (!kLength.test(declared)) {
    throw new InvalidRequestError(`${service}: header content-length must be a number of bytes, got ${JSON.stringify(declared.slice(0, 40))}`)
  }
  let actual: number | undefined
  if (body === null || body === undefined) actual = 0
  else if (typeof body === 'string') actual = Buffer.byteLength(body)
  else if (body instanceof Uint8Array) actual = body.byteLength
  if (actual !== undefined && actual !== Number(declared)) {
    throw new InvalidRequestError(`${service}: header content-length is ${declared} but the body has ${actual} bytes`)
  }
}

/**
 * Destroys a request body stream that will never be sent: its call failed or was refused. undici does the same for
 * a call it fails; a call that fails before reaching it (bad input, an open breaker, a full bulkhead, a closed
 * service) must too, or a file stream's descriptor stays open.
 */
export function discardRequestBody (body: unknown): void {
  if (body instanceof Readable && !body.destroyed) body.destroy()
}

/**
 * Encodes `json`, `form`, `body` or `multipart` of the call options. Sets `content-type` (and copies the headers)
 * unless the caller set one; `multipart` always sets its own (the boundary must match) and its `content-length` when
 * known. Only one of the four may be given.
 */
export function encodeBody (
  service: string, options: CallOptions, headers: Record<string, string>, copied: boolean
): { body: RequestBody, headers: Record<string, string>, copied: boolean } {
  let body: RequestBody = null
  let type: string | undefined
  let given = 0
  if (options.json !== undefined) {
    given++
    body = JSON.stringify(options.json)
    type = 'application/json'
  }
  if (options.form !== undefined) {
    given++
    body = encodeQuery(options.form, service, 'form')
    type = 'application/x-www-form-urlencoded'
  }
  if (options.body !== undefined) {
    given++
    const b = options.body
    if (typeof b !== 'string' && !(b instanceof Uint8Array) && !(b instanceof Readable)) {
      throw new InvalidRequestError(`${service}: body must be a string, Buffer, Uint8Array or Readable stream`)
    }
    body = b
  }
  if (options.multipart !== undefined) {
    given++
    const form = encodeMultipart(service, options.multipart)
    body = form.body
    headers = copyHeaders(headers)
    headers['content-type'] = form.contentType
    copied = true
    if (form.length !== undefined) headers['content-length'] = String(form.length)
  }
  if (given > 1) throw new InvalidRequestError(`${service}: give only one of json, form, body and multipart`)
  if (type !== undefined && headers['content-type'] === undefined) {
    if (!copied) {
      headers = copyHeaders(headers)
      copied = true
    }
    headers['content-type'] = type
  }
  return { body, headers, copied }
}

import { Call, encodeBody, mergeHeaders, type ClientScope } from './call'
import type { CallOptions, JsonCallOptions } from './client-types'
import { CallSignal } from './call-signal'
import { builtInDefaults } from './config/resolve'
import { InvalidRequestError, RequestAbortedError, describe, isHttpServicesError, redactPath, stamp } from './errors'
import { statusError } from './error-detail'
import type { Logger } from './pipeline/types'
import { buildPath } from './request-target'
import type { HttpResponse } from './response'
import type { HttpService } from './service'

const kMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'POST', 'PUT', 'PATCH', 'TRACE'])

/**
 * The calls users make to one service, bound to where they are made from (an inbound request or nothing).
 * Every method returns a promise; bad input rejects it.
 */
export class HttpClient {
  /** The service name. */
  readonly service: string
  private readonly svc: HttpService
  private readonly scope: ClientScope
  private readonly headers: Record<string, string>
  private log: Logger | undefined = undefined

  /** @internal */
  constructor (service: HttpService, scope: ClientScope) {
    this.service = service.name
    this.svc = service
    this.scope = scope
    const extra = scope.headersFor(service.options.forwardHeaders)
    this.headers = extra !== undefined ? { ...service.options.headers, ...extra } : service.options.headers
  }

  /** The logger calls of this client log with (`reqId` of the inbound request, `service`). */
  get logger (): Logger {
    if (this.log === undefined) this.log = this.scope.log.child({ service: this.service })
    return this.log
  }

  /** Sends a request and resolves with the response (rejecting a status >= 400 unless `throwHttpErrors: false`). */
  request (method: string, path: string, options?: CallOptions): Promise<HttpResponse> {
    let call: Call
    try {
      call = this.prepare(method, path, options ?? kNoOptions)
    } catch (err) {
      return Promise.reject(refused(err, this.service, method, path))
    }
    const opts = call.options
    const handler = opts.timeout !== undefined || opts.retry !== undefined || opts.fallback !== undefined || call.deadline !== Infinity
      ? this.svc.perCall
      : this.svc.handler
    let promise = this.svc.run(call, handler)
    if (opts.signal !== undefined) promise = unlinkWhenDone(promise, call.signal as CallSignal)
    const throwHttp = opts.throwHttpErrors ?? this.svc.options.throwHttpErrors
    if (!throwHttp) return promise
    return promise.then((res) => res.status < 400 ? res : this.fail(res))
  }

  get (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('GET', path, options) }
  head (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('HEAD', path, options) }
  options (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('OPTIONS', path, options) }
  delete (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('DELETE', path, options) }
  post (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('POST', path, options) }
  put (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('PUT', path, options) }
  patch (path: string, options?: CallOptions): Promise<HttpResponse> { return this.request('PATCH', path, options) }

  /** GET and parse the JSON body (`undefined` for an empty body). */
  async getJson<T = unknown> (path: string, options?: JsonCallOptions): Promise<T> {
    return (await this.request('GET', path, options)).json<T>()
  }

  /** POST `body` as JSON and parse the JSON answer. */
  async postJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return (await this.request('POST', path, withJson(options, body))).json<T>()
  }

  /** PUT `body` as JSON and parse the JSON answer. */
  async putJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return (await this.request('PUT', path, withJson(options, body))).json<T>()
  }

  /** PATCH `body` as JSON and parse the JSON answer. */
  async patchJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return (await this.request('PATCH', path, withJson(options, body))).json<T>()
  }

  /** DELETE and parse the JSON answer (`undefined` for 204). */
  async deleteJson<T = unknown> (path: string, options?: JsonCallOptions): Promise<T> {
    return (await this.request('DELETE', path, options)).json<T>()
  }

  /**
   * Sends a request and resolves with the response whose `body` is a stream, for `reply.send(res.body)`.
   * Status errors reject as usual (unless `throwHttpErrors: false`), so an error page is never streamed on.
   */
  stream (method: string, path: string, options?: CallOptions): Promise<HttpResponse> {
    return this.request(method, path, options)
  }

  private prepare (method: string, path: string, options: CallOptions): Call {
    const svc = this.svc
    const name = this.service
    if (typeof method !== 'string' || !kMethods.has(method.toUpperCase())) {
      throw new InvalidRequestError(`${name}: unsupported method ${JSON.stringify(method)}`)
    }
    method = method.toUpperCase()
    const target = buildPath(name, svc.options.basePath, path, options)
    let { headers, copied } = mergeHeaders(name, this.headers, options.headers)
    let body = null
    if (options.json !== undefined || options.form !== undefined || options.body !== undefined || options.multipart !== undefined) {
      const encoded = encodeBody(name, options, headers, copied)
      body = encoded.body
      headers = encoded.headers
      copied = encoded.copied
    }
    if (options.decompress !== undefined && options.decompress !== svc.options.decompress &&
      (options.headers === undefined || !hasHeader(options.headers, 'accept-encoding'))) {
      // A call that decodes asks for compression; one that passes bytes through leaves it to the upstream's default.
      headers = { ...headers }
      copied = true
      if (options.decompress) headers['accept-encoding'] ??= kAcceptEncoding
      else if (headers['accept-encoding'] === kAcceptEncoding) delete headers['accept-encoding']
    }
    const call = new Call(svc, method, target, path, headers, copied, body, options, this.scope.log)
    const t = options.timeout
    if (t !== undefined && typeof t === 'object') {
      if (t.headers !== undefined) call.headersTimeout = t.headers
      if (t.body !== undefined) call.bodyTimeout = t.body
    }
    call.deadline = this.scope.deadline
    const scopeSignal = this.scope.signal()
    const callerSignal = options.signal
    if (callerSignal !== undefined) {
      if (typeof callerSignal !== 'object' || callerSignal === null || typeof callerSignal.addEventListener !== 'function') {
        throw new InvalidRequestError(`${name}: signal must be an AbortSignal`)
      }
      const signal = new CallSignal()
      const target = { service: name, method, path: call.path }
      signal.follow(callerSignal, (reason) =>
        stamp(new RequestAbortedError(`${describe(target)}: aborted by the caller's signal`, { cause: reason }), target))
      if (signal.aborted) throw signal.reason
      if (scopeSignal !== undefined) signal.follow(scopeSignal)
      call.signal = signal
    } else {
      call.signal = scopeSignal
    }
    return call
  }

  private async fail (res: HttpResponse): Promise<never> {
    throw await statusError(res, this.svc.options.passthroughStatus)
  }
}

const kNoOptions: CallOptions = Object.freeze({})
const kAcceptEncoding = builtInDefaults.acceptEncoding

function hasHeader (headers: Record<string, unknown>, name: string): boolean {
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name && headers[key] !== undefined) return true
  return false
}

/** Stamps an error of a call refused before it started with the service, the method and (a usable) path. */
function refused (err: unknown, service: string, method: unknown, path: unknown): unknown {
  if (isHttpServicesError(err)) {
    if (err.service === undefined) err.service = service
    if (err.method === undefined && typeof method === 'string') err.method = method.toUpperCase()
    if (err.url === undefined && typeof path === 'string' && path.charCodeAt(0) === 47 && path.charCodeAt(1) !== 47) {
      err.url = redactPath(path.slice(0, 200))
    }
  }
  return err
}

/** Detaches a call's own signal from the caller's once the call is over (its body closed, or it failed). */
function unlinkWhenDone (promise: Promise<HttpResponse>, signal: CallSignal): Promise<HttpResponse> {
  return promise.then((res) => {
    const body = res.body
    if (body.destroyed || body.readableEnded) signal.unlink()
    else body.once('close', () => signal.unlink())
    return res
  }, (err) => {
    signal.unlink()
    throw err
  })
}

function withJson (options: JsonCallOptions | undefined, body: unknown): CallOptions {
  return body === undefined ? (options ?? kNoOptions) : { ...options, json: body }
}

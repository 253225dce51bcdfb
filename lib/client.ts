import { whenBodyDone } from './body-done'
import { Call, checkContentLength, discardRequestBody, encodeBody, mergeHeaders, type ClientScope } from './call'
import type { CallOptions, JsonCallOptions } from './client-types'
import { CallSignal } from './call-signal'
import { builtInDefaults } from './config/resolve'
import { checkCallTimeout, serviceSpec, show, suggest } from './config/validate'
import { InvalidRequestError, RequestAbortedError, describe, isHttpServicesError, redactPath, stamp } from './errors'
import type { CallOptionName, Logger, ServiceClient } from './pipeline/types'
import { destroyStreams } from './multipart'
import { buildPath } from './request-target'
import type { HttpResponse } from './response'
import type { HttpService } from './service'
import { copyHeaders } from './copy-headers'

const kMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'POST', 'PUT', 'PATCH', 'TRACE'])

/**
 * The calls users make to one service, bound to where they are made from (an inbound request or nothing).
 * Every method returns a promise; bad input rejects it.
 */
export class HttpClient implements ServiceClient {
  /** The service name. */
  readonly service: string
  // Private fields (not `private`): `util.inspect(client)` shows none of them, and the scope holds the inbound request.
  readonly #downstream: HttpService
  readonly #scope: ClientScope
  /** The headers each call starts from: a fixed or forwarded credential may be among them. */
  readonly #headers: Record<string, string>
  private log: Logger | undefined = undefined

  /** @internal */
  constructor (downstream: HttpService, scope: ClientScope) {
    this.service = downstream.name
    this.#downstream = downstream
    this.#scope = scope
    this.#headers = scope.headersFor(downstream.requestHeaders, downstream.options.forwardHeaders)
  }

  /** The logger calls of this client log with (`reqId` of the inbound request, `service`). */
  get logger (): Logger {
    if (this.log === undefined) this.log = this.#scope.log.child({ service: this.service })
    return this.log
  }

  /** Sends a request and resolves with the response (rejecting a status >= 400 unless `throwHttpErrors: false`). */
  request (method: string, path: string, options?: CallOptions): Promise<HttpResponse> {
    return this.send(method, path, options ?? kNoOptions, false)
  }

  get (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('GET', path, options ?? kNoOptions, false) }
  head (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('HEAD', path, options ?? kNoOptions, false) }
  options (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('OPTIONS', path, options ?? kNoOptions, false) }
  delete (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('DELETE', path, options ?? kNoOptions, false) }
  post (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('POST', path, options ?? kNoOptions, false) }
  put (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('PUT', path, options ?? kNoOptions, false) }
  patch (path: string, options?: CallOptions): Promise<HttpResponse> { return this.send('PATCH', path, options ?? kNoOptions, false) }

  /**
   * GET and parse the JSON body (`undefined` for an empty body). The *Json helpers read a 2xx body inside the
   * call's pipeline, so a body that breaks off half-way (connection reset, upstream gone) is retried like any
   * other failed attempt of an idempotent request, and attempt timeouts cover the body too.
   */
  getJson<T = unknown> (path: string, options?: JsonCallOptions): Promise<T> {
    return this.send('GET', path, options ?? kNoOptions, true) as Promise<unknown> as Promise<T>
  }

  /** POST `body` as JSON and parse the JSON answer. */
  postJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return this.send('POST', path, withJson(options, body), true) as Promise<unknown> as Promise<T>
  }

  /** PUT `body` as JSON and parse the JSON answer. */
  putJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return this.send('PUT', path, withJson(options, body), true) as Promise<unknown> as Promise<T>
  }

  /** PATCH `body` as JSON and parse the JSON answer. */
  patchJson<T = unknown> (path: string, body?: unknown, options?: JsonCallOptions): Promise<T> {
    return this.send('PATCH', path, withJson(options, body), true) as Promise<unknown> as Promise<T>
  }

  /** DELETE and parse the JSON answer (`undefined` for 204). */
  deleteJson<T = unknown> (path: string, options?: JsonCallOptions): Promise<T> {
    return this.send('DELETE', path, options ?? kNoOptions, true) as Promise<unknown> as Promise<T>
  }

  /**
   * Sends a request and resolves with the response whose `body` is a stream, for `reply.send(res.body)`.
   * Status errors reject as usual (unless `throwHttpErrors: false`), so an error page is never streamed on.
   */
  stream (method: string, path: string, options?: CallOptions): Promise<HttpResponse> {
    return this.send(method, path, options ?? kNoOptions, false)
  }

  /**
   * @internal Every verb and helper ends here: one call; `json` reads a 2xx body inside the pipeline and resolves
   * with it parsed (the *Json helpers). Never throws: bad input rejects. The mock client overrides it.
   */
  protected send (method: string, path: string, options: CallOptions, json: boolean): Promise<HttpResponse> {
    let call: Call
    try {
      call = this.prepare(method, path, options)
    } catch (err) {
      discardRequestBody(options.body)
      if (options.multipart !== undefined) destroyStreams(options.multipart)
      return Promise.reject(refused(err, this.service, method, path))
    }
    call.bufferBody = json
    const downstream = this.#downstream
    const routing = downstream.perCallRouting
    const handler = (call.deadline !== Infinity && routing.deadline) || (options !== kNoOptions && passesAny(options, routing.options))
      ? downstream.perCall
      : downstream.handler
    const finish = downstream.finisher(json, options.throwHttpErrors ?? downstream.options.throwHttpErrors)
    // The signal following the caller's, taken before the chain runs: a policy may put a signal of its own in its
    // place (the total timeout's, an attempt's), which is not the one linked to the caller's.
    const signal = call.signal
    const promise = downstream.run(call, handler, finish)
    if (options.signal === undefined) return promise
    // A *Json call's body was read in the pipeline: its signal is done with once the call settles.
    return json ? unlinkWhenSettled(promise, signal as CallSignal) : unlinkWhenDone(promise, signal as CallSignal)
  }

  private prepare (method: string, path: string, options: CallOptions): Call {
    const downstream = this.#downstream
    const name = this.service
    // The verbs and helpers pass an upper-case literal: only a method the caller wrote is upper-cased (a new string).
    if (!kMethods.has(method)) {
      if (typeof method !== 'string' || !kMethods.has(method.toUpperCase())) {
        throw new InvalidRequestError(`${name}: unsupported method ${JSON.stringify(method)}`)
      }
      method = method.toUpperCase()
    }
    if (options !== kNoOptions) checkOptionNames(name, options)
    const target = buildPath(name, downstream.options.basePath, path, options)
    let { headers, copied } = mergeHeaders(name, this.#headers, options.headers)
    let body = null
    if (options.json !== undefined || options.form !== undefined || options.body !== undefined || options.multipart !== undefined) {
      const encoded = encodeBody(name, options, headers, copied)
      body = encoded.body
      headers = encoded.headers
      copied = encoded.copied
    }
    if (options.headers !== undefined && headers['content-length'] !== undefined) checkContentLength(name, headers['content-length'], body)
    if (options.decompress !== undefined && options.decompress !== downstream.options.decompress &&
      (options.headers === undefined || !hasHeader(options.headers, 'accept-encoding'))) {
      // A call that decodes asks for compression; one that passes bytes through leaves it to the upstream's default.
      headers = copyHeaders(headers)
      copied = true
      if (options.decompress) headers['accept-encoding'] ??= kAcceptEncoding
      else if (headers['accept-encoding'] === kAcceptEncoding) delete headers['accept-encoding']
    }
    const call = new Call(downstream, method, target, path, headers, copied, body, options, this.#scope.log)
    const t = options.timeout
    if (t !== undefined) checkCallTimeout(t)
    if (t !== undefined && typeof t === 'object') {
      if (t.headers !== undefined) call.headersTimeout = t.headers
      if (t.body !== undefined) call.bodyTimeout = t.body
    }
    call.deadline = this.#scope.deadline
    const scopeSignal = this.#scope.signal()
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
}

const kNoOptions: CallOptions = Object.freeze({})

/**
 * Whether the call passes one of `names` (a service's `perCallRouting.options`: at most a few). A loop over a list made
 * once per service: a new policy's options join it by their declaration, at no cost to calls that pass no options.
 */
function passesAny (options: CallOptions, names: readonly CallOptionName[]): boolean {
  for (let i = 0; i < names.length; i++) if (options[names[i]] !== undefined) return true
  return false
}

/** Every call option: `satisfies` makes the compiler name one added to `CallOptions` and missing here. */
const kCallOptions = {
  query: true,
  params: true,
  headers: true,
  json: true,
  form: true,
  body: true,
  multipart: true,
  timeout: true,
  signal: true,
  throwHttpErrors: true,
  retry: true,
  fallback: true,
  decompress: true,
  token: true,
  auth: true
} as const satisfies Record<keyof CallOptions, true>

const kCallOptionNames: ReadonlySet<string> = new Set(Object.keys(kCallOptions))

/**
 * @internal Refuses a call option with an unknown name (a typo such as `qurey` would otherwise be ignored in
 * JavaScript). A `for in` over the few keys of the options and a Set lookup each: no allocation unless a key is
 * refused. The mock client checks with it too.
 */
export function checkOptionNames (service: string, options: CallOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidRequestError(`${service}: call options must be an object, got ${show(options)}`)
  }
  for (const key in options) {
    if (!kCallOptionNames.has(key)) throw unknownCallOption(service, key)
  }
}

function unknownCallOption (service: string, key: string): InvalidRequestError {
  const known = [...kCallOptionNames]
  const close = suggest(key, known)
  const why = Object.hasOwn(serviceSpec, key)
    ? 'a service option: set it in the service\'s options, not per call'
    : close !== undefined ? `did you mean "${close}"?` : `expected one of: ${known.join(', ')}`
  return new InvalidRequestError(`${service}: unknown call option ${show(key)} (${why})`)
}

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
    whenBodyDone(res, () => signal.unlink())
    return res
  }, (err) => {
    signal.unlink()
    throw err
  })
}

function unlinkWhenSettled<T> (promise: Promise<T>, signal: CallSignal): Promise<T> {
  return promise.then((value) => {
    signal.unlink()
    return value
  }, (err) => {
    signal.unlink()
    throw err
  })
}

function withJson (options: JsonCallOptions | undefined, body: unknown): CallOptions {
  return body === undefined ? (options ?? kNoOptions) : { ...options, json: body }
}

import { isDeepStrictEqual } from 'node:util'
import type { Interceptable } from 'undici'
import type { MockInterceptor, MockScope } from 'undici/types/mock-interceptor'
import { bodyText, mockCall, type ServiceTarget } from './mock-call'
import type { MockCall, MockInterceptOptions, MockMatcher, MockReplyCallback, MockReplyOptions, PendingMock } from './types'

/** What a service mock needs from the mock set it belongs to. */
export interface MockServiceHost {
  /** The service's origins and base path, looked up on each use (a later registration may move it). */
  target: (name: string) => ServiceTarget
  /** undici's mock pool of an origin. */
  pool: (origin: string) => Interceptable
  calls: (service: string) => MockCall[]
  pending: (service: string) => PendingMock[]
  assertAllCalled: (service: string) => void
}

const kDisplay = Symbol('mock.display')

/** Text of a path or method matcher, for pending lists. */
export function matcherText (m: unknown): string {
  if (typeof m === 'function') return (m as { [kDisplay]?: string })[kDisplay] ?? '<predicate>'
  return String(m)
}

function matchText (m: MockMatcher, value: string): boolean {
  if (typeof m === 'string') return m === value
  if (m instanceof RegExp) return m.test(value)
  return m(value) === true
}

const kService = Symbol('mock.service')

/** The service a non-string path matcher was made for. */
export function serviceOf (m: unknown): string | undefined {
  return typeof m === 'function' ? (m as { [kService]?: string })[kService] : undefined
}

/** The matcher of the full path a call sends, from the service-relative one the test writes. */
function scopedPath (target: ServiceTarget, path: MockMatcher): MockMatcher {
  const base = target.basePath
  if (typeof path === 'string') return base === '' ? path : path === '' ? base : base + path
  const scoped = (p: string): boolean => p.startsWith(base) && matchText(path, p.slice(base.length))
  return Object.assign(scoped, { [kDisplay]: path instanceof RegExp ? String(path) : '<predicate>', [kService]: target.name })
}

/** undici compares the raw body; tests think in text, or in JSON values. */
function bodyMatcher (body: MockInterceptOptions['body']): ((raw: string) => boolean) | undefined {
  if (body === undefined) return undefined
  if (typeof body === 'string' || body instanceof RegExp || typeof body === 'function') {
    const m = body as MockMatcher
    return (raw) => matchText(m, bodyText(raw) ?? '')
  }
  return (raw) => {
    const text = bodyText(raw)
    if (text === undefined) return false
    try {
      return isDeepStrictEqual(JSON.parse(text), body)
    } catch {
      return false
    }
  }
}

function isJsonValue (data: unknown): boolean {
  return data !== null && typeof data === 'object' && !(data instanceof Uint8Array) && !(data instanceof ArrayBuffer) &&
    typeof (data as { then?: unknown }).then !== 'function'
}

/** Adds `content-type: application/json` to an object reply, as a real server would, unless one was given. */
function withJsonType (data: unknown, options: MockInterceptor.MockResponseOptions | undefined): MockInterceptor.MockResponseOptions | undefined {
  if (!isJsonValue(data)) return options
  const headers = options?.headers ?? {}
  if (Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) return options
  return { ...options, headers: { ...headers, 'content-type': 'application/json' } }
}

/**
 * An interceptor of one service: undici's `MockInterceptor`, with two differences. An object reply is sent with
 * `content-type: application/json` (so error details are parsed as from a real server), and a callback reply (or a
 * data function) gets the call as the history records it (`method`, service-relative `path`, `query`, `headers`,
 * `body`, `json()`) rather than undici's raw options.
 * `reply()` returns undici's `MockScope`: chain `.times(n)`, `.persist()` or `.delay(ms)`.
 */
export class MockServiceInterceptor {
  private readonly inner: MockInterceptor
  private readonly target: ServiceTarget

  /** @internal */
  constructor (inner: MockInterceptor, target: ServiceTarget) {
    this.inner = inner
    this.target = target
  }

  /**
   * Answers with `status`, `data` (an object is sent as JSON; or a string or a Buffer; or a function of the call
   * returning one of those, or a promise of one) and `options.headers`.
   */
  reply (status: number, data: (call: MockCall) => unknown, options?: MockInterceptor.MockResponseOptions): MockScope
  reply (status: number, data?: unknown, options?: MockInterceptor.MockResponseOptions): MockScope
  /** Answers each call with what the callback returns for it. */
  reply (callback: MockReplyCallback): MockScope
  reply (statusOrCallback: number | MockReplyCallback, data?: unknown, options?: MockInterceptor.MockResponseOptions): MockScope {
    if (typeof statusOrCallback === 'function') return this.dynamic(statusOrCallback)
    if (typeof data === 'function') {
      const make = data as (call: MockCall) => unknown
      return this.dynamic((call) => ({ statusCode: statusOrCallback, data: make(call), responseOptions: options }))
    }
    return this.inner.reply(statusOrCallback, data as object, withJsonType(data, options))
  }

  /** Fails the call with `error` (see `networkError()` for a socket-like one). */
  replyWithError (error: Error): MockScope {
    return this.inner.replyWithError(error)
  }

  /** Headers every reply of this interceptor carries. */
  defaultReplyHeaders (headers: MockInterceptor.MockResponseOptions['headers'] & object): this {
    this.inner.defaultReplyHeaders(headers)
    return this
  }

  /** Adds a `content-length` header to the replies. */
  replyContentLength (): this {
    this.inner.replyContentLength()
    return this
  }

  private dynamic (callback: MockReplyCallback): MockScope {
    const target = this.target
    return this.inner.reply((opts: MockInterceptor.MockResponseCallbackOptions) => {
      const answer: MockReplyOptions = callback(mockCall(target, opts.origin ?? target.origins[0], opts.path, opts.method, opts.headers, opts.body))
      if (answer === null || typeof answer !== 'object') return answer
      return { ...answer, responseOptions: withJsonType(answer.data, answer.responseOptions) } as ReturnType<MockInterceptor.MockReplyOptionsCallback>
    })
  }
}

/** The mock of one service, from `mocks.service(name)`. */
export class MockService {
  /** The service name. */
  readonly name: string
  private readonly host: MockServiceHost

  /** @internal */
  constructor (name: string, host: MockServiceHost) {
    this.name = name
    this.host = host
  }

  /**
   * Intercepts calls to this service matching `options` (by default once: chain `.times(n)` or `.persist()` on the
   * reply). Interceptors of the same call answer in the order they were defined: `503, 503, 200` for a retry test.
   */
  intercept (options: MockInterceptOptions): MockServiceInterceptor {
    const target = this.host.target(this.name)
    const inner = this.host.pool(target.origins[0]).intercept({
      method: options.method,
      path: scopedPath(target, options.path),
      query: options.query,
      headers: options.headers,
      body: bodyMatcher(options.body)
    } as MockInterceptor.Options)
    return new MockServiceInterceptor(inner, target)
  }

  /** The calls made to this service since the last `reset()`, in order (each attempt of a retried call is one). */
  calls (): MockCall[] {
    return this.host.calls(this.name)
  }

  /** The last call made to this service, if any. */
  lastCall (): MockCall | undefined {
    return this.host.calls(this.name).at(-1)
  }

  /** This service's interceptors still waiting for calls. */
  pending (): PendingMock[] {
    return this.host.pending(this.name)
  }

  /** Throws an `AssertionError` when an interceptor of this service is still pending or a call to it matched none. */
  assertAllCalled (): void {
    this.host.assertAllCalled(this.name)
  }
}

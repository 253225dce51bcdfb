import { HttpClient, checkOptionNames } from '../client'
import type { CallOptions } from '../client-types'
import { statusError } from '../error-detail'
import { InvalidRequestError, isHttpServicesError, stamp } from '../errors'
import { buildPath } from '../request-target'
import { HttpResponse } from '../response'
import type { HttpService } from '../service'
import { silentLogger, unboundScope } from '../services'
import { MockUnmatchedError } from './errors'
import { mockResponse, type MockResponseInit } from './mock-response'

/** What a mock client answers: a response to build, a response (read once), or an error to reject with. */
export type MockClientReply = MockResponseInit | HttpResponse | Error

/** Answers a call from its path (as the code wrote it), options and upper-case method. */
export type MockClientHandler = (path: string, options: CallOptions, method: string) => MockClientReply | Promise<MockClientReply>

/** The answers of a mock client, by method. `request` answers every method without its own entry. */
export interface MockClientRoutes {
  get?: MockClientReply | MockClientHandler
  head?: MockClientReply | MockClientHandler
  options?: MockClientReply | MockClientHandler
  post?: MockClientReply | MockClientHandler
  put?: MockClientReply | MockClientHandler
  patch?: MockClientReply | MockClientHandler
  delete?: MockClientReply | MockClientHandler
  request?: MockClientReply | MockClientHandler
}

export interface MockClientOptions {
  /**
   * The service name the client reports (in `service`, errors and responses).
   * @default 'mock'
   */
  service?: string
  /**
   * Reject a status >= 400 with `HttpStatusError`, as the real client does; a call's own `throwHttpErrors` wins.
   * @default true
   */
  throwHttpErrors?: boolean
  /**
   * The `HttpStatusError`'s `statusCode` is the status itself instead of 502.
   * @default false
   */
  passthroughStatus?: boolean
}

/** A call a mock client received. */
export interface MockClientCall {
  /** Upper-case method. */
  method: string
  /** The path as the code wrote it. */
  path: string
  /** The call's options (a `*Json` helper's body is `options.json`). */
  options: CallOptions
}

function readJson (res: HttpResponse): Promise<HttpResponse> {
  return res.json()
}

const kMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'POST', 'PUT', 'PATCH', 'TRACE'])

/**
 * A stand-in for `request.httpClient(name)` in unit tests of code that takes a client: it is an `HttpClient`
 * (every verb, the `*Json` helpers and `stream` answer from the routes), with no pool, no pipeline and no
 * network. Error statuses reject with the same `HttpStatusError` the real client throws.
 */
export class MockHttpClient extends HttpClient {
  /** Every call received, in order. */
  readonly calls: MockClientCall[] = []
  private readonly routes: MockClientRoutes
  private readonly throwHttpErrors: boolean
  private readonly passthroughStatus: boolean

  /** @internal */
  constructor (routes: MockClientRoutes, options: MockClientOptions = {}) {
    const name = options.service ?? 'mock'
    // HttpClient reads only the name and the header options of its service when it is built.
    super({ name, requestHeaders: {}, options: { headers: {}, forwardHeaders: [] } } as unknown as HttpService, unboundScope(silentLogger))
    this.routes = routes
    this.throwHttpErrors = options.throwHttpErrors ?? true
    this.passthroughStatus = options.passthroughStatus ?? false
  }

  protected override send (method: string, path: string, options: CallOptions, json: boolean): Promise<HttpResponse> {
    const answer = this.answer(method, path, options)
    // The *Json helpers resolve with the parsed body (the real client reads it inside its pipeline).
    return json ? answer.then(readJson) : answer
  }

  private async answer (method: string, path: string, options: CallOptions): Promise<HttpResponse> {
    const service = this.service
    if (typeof method !== 'string' || !kMethods.has(method.toUpperCase())) {
      throw new InvalidRequestError(`${service}: unsupported method ${JSON.stringify(method)}`)
    }
    const m = method.toUpperCase()
    checkOptionNames(service, options)
    const target = buildPath(service, '', path, options)
    this.calls.push({ method: m, path, options })
    const call = { service, method: m, path: target }
    const route = this.routes[m.toLowerCase() as keyof MockClientRoutes] ?? this.routes.request
    if (route === undefined) {
      const known = Object.keys(this.routes).join(', ')
      const e = new MockUnmatchedError(`${service}: the mock client has no reply for ${m} ${target} (it answers: ${known === '' ? 'nothing' : known})`)
      e.pending = []
      throw stamp(e, call)
    }
    const reply = typeof route === 'function' ? await route(path, options, m) : route
    if (reply instanceof Error) throw isHttpServicesError(reply) ? stamp(reply, call) : reply
    const res = reply instanceof HttpResponse ? reply : mockResponse({ ...reply, ...call })
    if (res.status >= 400 && (options.throwHttpErrors ?? this.throwHttpErrors)) throw await statusError(res, this.passthroughStatus)
    return res
  }
}

/**
 * A mock client answering from `routes`: each value is a response (`{ status, json, headers }` built anew for every
 * call, or an `HttpResponse`), an error, or a function `(path, options, method)` returning one.
 *
 * ```ts
 * const users = mockClient({
 *   get: (path) => path === '/users/7' ? { json: { id: 7 } } : { status: 404, json: { error: 'no such user' } },
 *   post: { status: 201, json: { id: 8 } }
 * }, { service: 'users' })
 * await new UserDirectory(users).find(7)
 * ```
 */
export function mockClient (routes: MockClientRoutes, options?: MockClientOptions): MockHttpClient {
  return new MockHttpClient(routes, options)
}

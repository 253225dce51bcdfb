import type { MockInterceptor } from 'undici/types/mock-interceptor'

/** A matcher of a string: the exact value, a RegExp, or a predicate. */
export type MockMatcher = string | RegExp | ((value: string) => boolean)

/** What a service mock intercepts. Every given field must match. */
export interface MockInterceptOptions {
  /**
   * HTTP method.
   * @default 'GET'
   */
  method?: MockMatcher
  /**
   * Path relative to the service's base path, as the calling code writes it (`'/invoices'` for
   * `baseUrl: 'http://billing/api/v1'`). A string must match exactly, query included (in any order): give the
   * query here or in `query`. A RegExp or predicate sees the path with its query.
   */
  path: MockMatcher
  /** Query parameters the call must carry, exactly (a string `path` only). */
  query?: Record<string, unknown>
  /** Headers the call must carry (lower-case names), or a predicate of all of them. */
  headers?: MockInterceptor.Options['headers']
  /**
   * The request body: a string, RegExp or predicate of its text, or any other value, compared as parsed JSON
   * (deep equality).
   */
  body?: MockMatcher | object | unknown[] | number | boolean | null
}

/** One call that reached the mocks (intercepted or not), as the calling code made it. */
export interface MockCall {
  /** The service the call was made to; `undefined` for an origin no service uses. */
  service: string | undefined
  /** Upper-case method. */
  method: string
  /** Path relative to the service's base path, without the query. */
  path: string
  /** Query parameters; a repeated key gives an array. */
  query: Record<string, string | string[]>
  /** Request headers, lower-case names. */
  headers: Record<string, string>
  /** The request body as text; `undefined` when there was none or it was a stream. */
  body: string | undefined
  /** Absolute URL as sent (base path and query included). */
  url: string
  /** The body parsed as JSON; `undefined` when there was none. */
  json: <T = unknown>() => T
}

/** An interceptor still waiting for (more) calls. */
export interface PendingMock {
  /** The service it belongs to; `undefined` for an origin no service uses. */
  service: string | undefined
  origin: string
  method: string
  /** Path relative to the service's base path (query included), or the matcher's text. */
  path: string
  /** Status it answers with, `'error'` for `replyWithError`, `'dynamic'` for a callback reply. */
  reply: number | 'error' | 'dynamic'
  /** Calls it answered so far. */
  invoked: number
  /** Calls it still expects; `Infinity` for a persistent one. */
  remaining: number
}

/** What a callback reply returns: undici's reply options. An object `data` is sent as JSON. */
export interface MockReplyOptions {
  statusCode: number
  data?: unknown
  responseOptions?: MockInterceptor.MockResponseOptions
}

/** A callback reply: it gets the call (as the history records it) and answers it. */
export type MockReplyCallback = (call: MockCall) => MockReplyOptions

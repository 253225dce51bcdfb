import type { IncomingHttpHeaders } from 'node:http'
import { Headers, setCookie, type Cookie } from 'undici'
import { statusError } from '../error-detail'
import type { HttpStatusError } from '../errors'
import { HttpResponse } from '../response'
import { syntheticResponse, type SyntheticResponseInit } from '../synthetic-response'

/** A response to build without a network: status, one body (`json`, `text` or `body`), headers and cookies. */
export interface MockResponseInit extends Omit<SyntheticResponseInit, 'headers'> {
  /** Response headers; names are lower-cased, numbers turned into text. */
  headers?: Record<string, string | string[] | number | undefined>
  /**
   * Cookies the response sets, added as `set-cookie` headers: `{ name: value }`, or undici cookies with
   * attributes (`{ name, value, path, httpOnly, maxAge, … }`).
   */
  cookies?: Record<string, string> | Cookie[]
  /**
   * What `attempts` reports, as if a retry policy had run.
   * @default 1
   */
  attempts?: number
}

function setCookieLines (cookies: Record<string, string> | Cookie[]): string[] {
  const list: Cookie[] = Array.isArray(cookies) ? cookies : Object.entries(cookies).map(([name, value]) => ({ name, value }))
  const headers = new Headers()
  for (const cookie of list) setCookie(headers, cookie)
  return headers.getSetCookie()
}

function lowerHeaders (init: MockResponseInit): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const [name, value] of Object.entries(init.headers ?? {})) {
    if (value === undefined) continue
    out[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value)
  }
  if (init.cookies !== undefined) {
    const given = out['set-cookie']
    out['set-cookie'] = [...(given === undefined ? [] : Array.isArray(given) ? given : [given]), ...setCookieLines(init.cookies)]
  }
  return out
}

/**
 * Builds the same `HttpResponse` a client call returns (`status`, `headers`, `ok`, `cookies`, `json()`, `text()`,
 * `arrayBuffer()`, `body` stream, the same size limit), for unit tests and fallbacks. An object `json` is sent as
 * JSON with its content type; a `text` as `text/plain`; `body` bytes (a Buffer, Uint8Array or ArrayBuffer) as they
 * are, decoded by `text()` and `json()` as a body off the network.
 *
 * ```ts
 * const res = mockResponse({ status: 201, json: { id: 7 }, cookies: { session: 'abc' } })
 * const image = mockResponse({ body: png, headers: { 'content-type': 'image/png' } })
 * ```
 */
export function mockResponse (init: MockResponseInit = {}): HttpResponse {
  const res = syntheticResponse({ ...init, headers: lowerHeaders(init) })
  if (init.attempts !== undefined) res.attempts = init.attempts
  return res
}

/**
 * The `HttpStatusError` the client throws for an error response (the same message, `status`, `detail`, parsed
 * `body`, `responseHeaders` and `statusCode` 502, or the status itself with `passthroughStatus`), to make a stub
 * fail the way the real client does. Reads the response's body.
 *
 * ```ts
 * const err = await mockStatusError({ status: 404, json: { error: 'no such user' }, service: 'users', path: '/users/7' })
 * ```
 */
export async function mockStatusError (response: MockResponseInit | HttpResponse, options: { passthroughStatus?: boolean } = {}): Promise<HttpStatusError> {
  const res = response instanceof HttpResponse ? response : mockResponse(response)
  if (res.status < 400) throw new TypeError(`mockStatusError needs an error status (>= 400), got ${res.status}`)
  return await statusError(res, options.passthroughStatus ?? false)
}

import { ForbiddenUrlError, InvalidRequestError, redactPath } from './errors'
import type { CallOptions, QueryValue } from './client-types'

const kScheme = /^[a-zA-Z][a-zA-Z\d+.-]*:/
// Characters no request target may hold raw: anything but printable ASCII (controls, space, DEL, non-ASCII),
// and backslash (some servers read it as '/').
const kBadPathChar = /[^\u0021-\u007e]|\\/
const kParam = /:([A-Za-z_][A-Za-z0-9_]*)/g
// A dot segment, raw or encoded, as some server on the way may read it:
// - dots: `.`, `%2e`, overlong UTF-8 (`%c0%ae`, `%e0%80%ae`, `%f0%80%80%ae`: old decoders and some WAFs accept them),
//   IIS's `%u002e`, and double encoding (`%252e`: a proxy that decodes once passes `%2e` to a server that decodes
//   again);
// - separators around them: `/`, encoded slashes and backslashes (nginx and others decode them before resolving dot
//   segments), their overlong and double-encoded forms, and `;` raw or encoded (Tomcat reads `..;/` as `../`).
// A `params` value is encoded once, so a value holding `%2e%2e` is refused too: it is one decoding away from `..`.
const kDot = String.raw`(?:\.|%2e|%252e|%c0%ae|%e0%80%ae|%f0%80%80%ae|%u002e)`
const kSeparator = String.raw`(?:\/|%2f|%5c|%252f|%255c|%c0%af|%e0%80%af|%c1%9c|%u002f|%u005c)`
const kDotSegment = new RegExp(`(?:^|${kSeparator})${kDot}{1,2}(?:${kSeparator}|;|%3b|%253b|$|\\?)`, 'i')

const kUserinfo = /^([^/?#]*\/\/)[^/?#]*@/

/** A refused path as errors show it (their message is sent to clients): query values and URL credentials redacted. */
function shown (path: string): string {
  return redactPath(path.slice(0, 200)).replace(kUserinfo, '$1***@')
}

function forbidden (service: string, path: string, why: string): never {
  const url = shown(path)
  const e = new ForbiddenUrlError(`${service}: path ${JSON.stringify(url)} refused: ${why}`)
  e.service = service
  e.url = url
  throw e
}

/**
 * `false` when `path` cannot hold a dot segment: each of `kDot`'s forms holds a `.` or a `%`. Two scans of the path
 * spare most calls' paths (`/users/42`) the long regex, which took about as long as the rest of building the target.
 */
function mayHoldDotSegment (path: string): boolean {
  return path.indexOf('.') !== -1 || path.indexOf('%') !== -1
}

/** `false` for a target holding a raw bad character or a dot segment (raw or encoded): used on redirect targets. */
export function isSafeTarget (path: string): boolean {
  return !kBadPathChar.test(path) && !(mayHoldDotSegment(path) && kDotSegment.test(path))
}

/**
 * Builds the request target (`/base/path?query`) of a call from the caller's path, `params` and `query`.
 * Only relative paths inside the service's base path pass: absolute URLs, `//host` paths, backslashes and
 * dot segments are refused with `ForbiddenUrlError` before any connection is made (SSRF).
 */
export function buildPath (service: string, basePath: string, path: string, options: CallOptions | undefined): string {
  if (typeof path !== 'string') {
    throw new InvalidRequestError(`${service}: path must be a string, got ${typeof path}`)
  }
  if (path.length > 0 && path.charCodeAt(0) !== 47 /* / */) {
    if (kScheme.test(path)) forbidden(service, path, 'absolute URLs are not allowed; pass a path relative to the service baseUrl')
    forbidden(service, path, 'the path must start with "/"')
  }
  if (path.charCodeAt(1) === 47 /* // */) forbidden(service, path, 'protocol-relative "//host" paths are not allowed')
  if (kBadPathChar.test(path)) forbidden(service, path, 'it contains a space, control, non-ASCII or backslash character (pass values in `query` or `params`, which are encoded)')

  const hash = path.indexOf('#')
  if (hash !== -1) path = path.slice(0, hash)

  const params = options?.params
  if (params !== undefined) path = fillParams(service, path, params)
  if (mayHoldDotSegment(path) && kDotSegment.test(path)) forbidden(service, path, 'dot segments ("." or "..") could escape the base path')

  if (path.length === 0 && basePath.length === 0) path = '/'
  const query = options?.query
  if (query !== undefined) {
    const qs = encodeQuery(query, service, 'query')
    if (qs.length > 0) path += (path.includes('?') ? '&' : '?') + qs
  }
  if (path.length === 0) return basePath.length === 0 ? '/' : basePath
  return basePath + path
}

function fillParams (service: string, path: string, params: Record<string, string | number>): string {
  return path.replace(kParam, (_match, name: string) => {
    const value = Object.prototype.hasOwnProperty.call(params, name) ? params[name] : undefined
    if (value === undefined || value === null) {
      throw new InvalidRequestError(`${service}: path ${JSON.stringify(shown(path))} needs params.${name}`)
    }
    const text = String(value)
    if (text === '.' || text === '..' || text.length === 0) {
      forbidden(service, path, `params.${name} is ${JSON.stringify(text)}`)
    }
    try {
      return encodeURIComponent(text)
    } catch (err) {
      throw malformed(service, `params.${name}`, err)
    }
  })
}

/**
 * A string with a lone surrogate (half of a UTF-16 pair) has no UTF-8 form: `encodeURIComponent` throws a `URIError`,
 * which becomes the call's `InvalidRequestError`. (URLSearchParams and FormData replace it with U+FFFD instead,
 * as the WHATWG specs say; a multipart form follows FormData.)
 */
function malformed (service: string, where: string, err: unknown): InvalidRequestError {
  return new InvalidRequestError(`${service}: ${where} holds a lone surrogate (not well-formed Unicode)`, { cause: err })
}

function appendPair (parts: string[], key: string, value: string | number | boolean, service: string, what: string): void {
  try {
    parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(String(value)))
  } catch (err) {
    throw malformed(service, `${what} ${JSON.stringify(key.slice(0, 40))}`, err)
  }
}

/**
 * Encodes a query object (`undefined`/`null` dropped, arrays repeat the key) or URLSearchParams. `what` (`query`,
 * `form`) names the option in the `InvalidRequestError` of a key or value that cannot be encoded.
 */
export function encodeQuery (query: Record<string, QueryValue> | URLSearchParams, service: string, what: string): string {
  if (query instanceof URLSearchParams) return query.toString()
  const parts: string[] = []
  for (const key of Object.keys(query)) {
    const value = query[key]
    if (value === undefined || value === null) continue
    if (Array.isArray(value)) {
      for (const v of value as ReadonlyArray<string | number | boolean>) appendPair(parts, key, v, service, what)
    } else {
      appendPair(parts, key, value as string | number | boolean, service, what)
    }
  }
  return parts.join('&')
}

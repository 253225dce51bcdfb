import { Readable } from 'node:stream'
import type { MockCall } from './types'

/** Where a service lives, as far as the mocks care. */
export interface ServiceTarget {
  name: string
  /** Normalised origins (`http://host:port`), the first being where its calls go. */
  origins: string[]
  /** Base path without a trailing slash; `''` when none. */
  basePath: string
}

/** The text of a request body as undici got it; `undefined` for none or a stream. */
export function bodyText (body: unknown): string | undefined {
  if (body === null || body === undefined || body instanceof Readable) return undefined
  if (typeof body === 'string') return body
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
  return undefined
}

function headerRecord (headers: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) out[String(headers[i]).toLowerCase()] = String(headers[i + 1])
  } else if (headers !== null && typeof headers === 'object') {
    for (const [k, v] of Object.entries(headers)) {
      if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v)
    }
  }
  return out
}

/** `path` with the service's base path taken off, when it starts with it. */
export function relativePath (target: ServiceTarget | undefined, path: string): string {
  const base = target?.basePath ?? ''
  if (base === '' || !path.startsWith(base)) return path
  const rest = path.slice(base.length)
  return rest === '' ? '/' : rest
}

class RecordedCall implements MockCall {
  service: string | undefined
  method: string
  path: string
  query: Record<string, string | string[]>
  headers: Record<string, string>
  body: string | undefined
  url: string

  constructor (target: ServiceTarget | undefined, method: string, url: URL, headers: unknown, body: unknown) {
    this.service = target?.name
    this.method = method
    this.path = relativePath(target, url.pathname)
    const query: Record<string, string | string[]> = {}
    for (const [k, v] of url.searchParams) {
      const seen = query[k]
      query[k] = seen === undefined ? v : Array.isArray(seen) ? [...seen, v] : [seen, v]
    }
    this.query = query
    this.headers = headerRecord(headers)
    this.body = bodyText(body)
    this.url = url.href
  }

  json<T = unknown> (): T {
    return (this.body === undefined || this.body === '' ? undefined : JSON.parse(this.body)) as T
  }
}

/** The call a request to `origin` + `path` (query included) is, seen from the service `target`. */
export function mockCall (
  target: ServiceTarget | undefined, origin: string, path: string, method: string, headers: unknown, body: unknown
): MockCall {
  return new RecordedCall(target, method, new URL(path, origin), headers, body)
}

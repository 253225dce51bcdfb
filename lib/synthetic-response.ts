import { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { HttpResponse } from './response'

/** What a response built without a network (fallbacks, mocks) may carry. */
export interface SyntheticResponseInit {
  /** @default 200 */
  status?: number
  headers?: IncomingHttpHeaders
  /** Sent as JSON (`content-type: application/json`) unless `text` or `body` is given. */
  json?: unknown
  /** Sent as UTF-8 (`content-type: text/plain; charset=utf-8`) unless `body` is given. */
  text?: string
  /**
   * The body as bytes, any bytes (an image, protobuf): `arrayBuffer()` and `body` give them back as they are, `text()`
   * and `json()` decode them as for a response off the network. Copied, so the response keeps its own. Or a stream,
   * read as it comes.
   */
  body?: Buffer | Uint8Array | ArrayBuffer | Readable
  /** Where the response pretends to come from (used in `url` and in errors). */
  service?: string
  method?: string
  path?: string
  origin?: string
  /** @default 10485760 */
  maxResponseSize?: number
}

/**
 * Builds an `HttpResponse` from a value, with the same reading methods and limits as one from the network:
 * for fallbacks and for the mock kit's `mockResponse`.
 */
export function syntheticResponse (init: SyntheticResponseInit): HttpResponse {
  const headers: IncomingHttpHeaders = { ...init.headers }
  let body: Readable
  if (init.body instanceof Readable) {
    body = init.body
  } else {
    let bytes: Buffer
    if (init.body !== undefined) {
      bytes = Buffer.from(init.body instanceof ArrayBuffer ? new Uint8Array(init.body) : init.body)
    } else if (init.text !== undefined) {
      bytes = Buffer.from(init.text, 'utf8')
      headers['content-type'] ??= 'text/plain; charset=utf-8'
    } else if (init.json !== undefined) {
      bytes = Buffer.from(JSON.stringify(init.json), 'utf8')
      headers['content-type'] ??= 'application/json'
    } else {
      bytes = Buffer.alloc(0)
    }
    headers['content-length'] ??= String(bytes.length)
    body = Readable.from(bytes.length > 0 ? [bytes] : [])
  }
  return new HttpResponse(init.status ?? 200, headers, body, {
    service: init.service ?? 'synthetic',
    method: init.method ?? 'GET',
    path: init.path ?? '/',
    origin: init.origin ?? 'http://synthetic.invalid',
    maxResponseSize: init.maxResponseSize ?? 10 * 1024 * 1024
  })
}

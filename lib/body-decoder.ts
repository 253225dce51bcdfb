import type { IncomingHttpHeaders } from 'node:http'
import { ResponseParseError, describe, stamp, type CallTarget } from './errors'
import { kDetailLimit, kHeaderLimit, wireText } from './error-text'

/*
 * How a response body becomes bytes, text and JSON, for every way of reading one: the *Json helpers' body gathered
 * by the transport (`./pipeline/buffered-attempt`), `text()` / `json()` / `arrayBuffer()` of a streamed body, and
 * responses rebuilt from bytes (mocks, fallbacks, a cache). One decoder, so a body parses the same whichever way it
 * is read. Text and JSON are decoded as WHATWG's body mixin does (undici's `body.text()`, `Response.json()`).
 */

/** What a decoding error reports of the response whose body it is. */
export interface DecodedResponse {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly meta: CallTarget
}

const kEmpty = Buffer.alloc(0)

/**
 * The chunks of a body as they come in, at most `limit` bytes (`maxResponseSize`). The chunks are kept as they are:
 * `bytes()` joins them, without a copy when there is only one (a small body comes in one).
 */
export class BodyChunks {
  /** Bytes kept so far. */
  size = 0
  private readonly chunks: Buffer[] = []

  constructor (private readonly limit: number) {}

  /** Keeps `chunk`; `false` (and the chunk not kept) when it would take the body over the limit. */
  add (chunk: Buffer): boolean {
    const size = this.size + chunk.length
    if (size > this.limit) return false
    this.size = size
    this.chunks.push(chunk)
    return true
  }

  /** The body's bytes. */
  bytes (): Buffer {
    const chunks = this.chunks
    if (chunks.length === 1) return chunks[0]
    return chunks.length === 0 ? kEmpty : Buffer.concat(chunks, this.size)
  }
}

/** A chunk of a body stream as a Buffer: a string (a stream with an encoding set) as UTF-8, other bytes unchanged. */
export function asBuffer (chunk: Buffer | Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8')
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
}

/** `true` when `bytes` start with the UTF-8 byte order mark (EF BB BF). */
function hasBom (bytes: Buffer): boolean {
  return bytes.length > 2 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
}

/**
 * The body as text, as WHATWG's "UTF-8 decode" (undici's `text()`, `new TextDecoder().decode()`): a leading byte
 * order mark is dropped, and each invalid sequence becomes U+FFFD. Whatever the `content-type` says.
 */
export function bodyText (bytes: Buffer): string {
  return bytes.toString('utf8', hasBom(bytes) ? 3 : 0)
}

/**
 * The body parsed as JSON (its text as `bodyText` decodes it); `undefined` for an empty body (or one that is only a
 * byte order mark). A body that is not JSON throws `ResponseParseError`, with the status, the content type and the
 * start of the body (capped, without control characters: it is the upstream's text, so it stays out of the message,
 * which Fastify sends to clients).
 */
export function bodyJson (bytes: Buffer, res: DecodedResponse): unknown {
  const text = bodyText(bytes)
  if (text.length === 0) return undefined
  try {
    return JSON.parse(text)
  } catch (err) {
    const contentType = wireText(res.headers['content-type'], kHeaderLimit)
    const snippet = wireText(text, kDetailLimit) as string
    const e = new ResponseParseError(`${describe(res.meta)}: response ${res.status} is not valid JSON`, { cause: err })
    throw stamp(e, res.meta, { status: res.status, contentType, snippet })
  }
}

import { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { parseCookie, type Cookie } from 'undici'
import { InvalidRequestError, ResponseParseError, ResponseTooLargeError, describe, stamp, type CallTarget } from './errors'
import { kDetailLimit, kHeaderLimit, wireText } from './error-text'
import { toCallError } from './transport-errors'
import type { CallContext } from './pipeline/types'
import type { UnreadBody } from './unread-body'

/** Where a response came from and how much of it may be buffered. */
export interface ResponseMeta extends CallTarget {
  /** Origin the response came from (`http://host:port`). */
  origin: string
  /** Largest body `json()`/`text()`/`arrayBuffer()` read, in bytes. */
  maxResponseSize: number
  timeouts?: { connect: number, headers: number, body: number }
}

const ignore = (): void => {}

function utf8 (buf: Buffer): string {
  return buf.toString('utf8')
}

/** The body of an undici response: a Readable with fast consumers. */
interface FastBody extends Readable {
  text?: () => Promise<string>
  arrayBuffer?: () => Promise<ArrayBuffer>
}

/** A response from a downstream service. Read the body once: `json()`, `text()`, `arrayBuffer()` or `body`. */
export class HttpResponse {
  /** Status code. */
  readonly status: number
  /** Response headers, lower-case names (`set-cookie` is an array). */
  readonly headers: IncomingHttpHeaders
  /** How many attempts the call took (set by the retry policy; 1 without retries). */
  attempts = 1
  /** @internal */
  readonly meta: ResponseMeta
  /** @internal The call whose attempt this is the answer of (set by the transport). */
  call: CallContext | undefined = undefined
  /** @internal The watch on a body handed to the caller unread (see `./unread-body`); `undefined` when none. */
  unreadBody: UnreadBody | undefined = undefined

  constructor (status: number, headers: IncomingHttpHeaders, body: Readable, meta: ResponseMeta) {
    this.status = status
    this.headers = headers
    this.stream = body
    this.meta = meta
  }

  /**
   * @internal A response whose body the transport reads itself, without a stream (the *Json helpers): `setText()`
   * gives it its body once read.
   */
  static unread (status: number, headers: IncomingHttpHeaders, meta: ResponseMeta): HttpResponse {
    return new HttpResponse(status, headers, null as unknown as Readable, meta)
  }

  /** @internal The body the transport read for an `unread()` response (UTF-8, at most `maxResponseSize` bytes). */
  setText (text: string): void {
    this.buffered = text
  }

  /** The body as a stream; pass it to `reply.send()` to stream it on. */
  get body (): Readable {
    if (this.unreadBody !== undefined) this.unreadBody.handOut()
    let stream = this.stream
    if (stream === null) {
      // A body the transport read already: the same bytes as a stream (an empty one once it was read).
      stream = new Readable({ read () {} })
      if (this.buffered !== undefined && !this.used) stream.push(Buffer.from(this.buffered, 'utf8'))
      stream.push(null)
      this.stream = stream
    }
    return stream
  }

  /** @internal The body stream, `null` when the transport read the body without one (no stream made for it). */
  get bodyStream (): Readable | null {
    return this.stream
  }

  /** `true` for a 2xx status. */
  get ok (): boolean {
    return this.status >= 200 && this.status < 300
  }

  /** Absolute URL of the call (query values as sent). */
  get url (): string {
    return this.meta.origin + this.meta.path
  }

  /**
   * The cookies the response sets, parsed from its `set-cookie` headers by undici: `{ name, value, path, expires,
   * maxAge, domain, secure, httpOnly, sameSite }` each. Parsed on each access.
   */
  get cookies (): Cookie[] {
    const raw = this.headers['set-cookie']
    if (raw === undefined) return []
    const out: Cookie[] = []
    for (const line of Array.isArray(raw) ? raw : [raw]) {
      const cookie = parseCookie(line)
      if (cookie !== null) out.push(cookie)
    }
    return out
  }

  /** The body as UTF-8 text, at most `maxResponseSize` bytes. */
  async text (): Promise<string> {
    this.claim()
    if (this.buffered !== undefined) return this.buffered
    const body = this.body as FastBody
    const known = this.knownLength()
    if (known !== undefined && typeof body.text === 'function') {
      try {
        return await body.text()
      } catch (err) {
        throw toCallError(err, this.meta, this.meta.timeouts)
      }
    }
    return (await this.readLimited()).toString('utf8')
  }

  /** The body parsed as JSON; `undefined` for an empty body (204, HEAD, content-length 0). */
  async json<T = unknown> (): Promise<T> {
    if (this.status === 204 || this.status === 304 || this.meta.method === 'HEAD') {
      this.claim()
      this.stream?.resume()
      return undefined as T
    }
    return this.parse<T>(await this.text())
  }

  /**
   * @internal The *Json helpers' read: the parsed body, at once when the pipeline already read it.
   */
  readJson (): unknown {
    if (this.buffered === undefined || this.used) return this.json()
    this.used = true
    return this.parse(this.buffered)
  }

  /**
   * @internal Reads the body into memory (at most `maxResponseSize`), inside the call's pipeline, so a body that
   * breaks off fails the attempt rather than the caller's later read; then calls `done` with this response (whose
   * body can still be read once) or `failed` with a typed error. Callbacks, not a promise: the transport settles its
   * own promise with them, a stage less per call.
   */
  buffer (done: (res: HttpResponse) => void, failed: (err: unknown) => void): void {
    const body = this.body as FastBody
    let text: Promise<string>
    try {
      const known = this.knownLength()
      text = known !== undefined && typeof body.text === 'function'
        ? body.text()
        : this.readLimited().then(utf8)
    } catch (err) {
      failed(err)
      return
    }
    text.then((t) => {
      this.setText(t)
      done(this)
    }, (err: unknown) => failed(toCallError(err, this.meta, this.meta.timeouts)))
  }

  private parse<T> (text: string): T {
    if (text.length === 0) return undefined as T
    try {
      return JSON.parse(text) as T
    } catch (err) {
      // The content-type and the snippet are the upstream's text: they stay out of the message (Fastify sends it to
      // clients), capped and without control characters.
      const contentType = wireText(this.headers['content-type'], kHeaderLimit)
      const snippet = wireText(text, kDetailLimit) as string
      const e = new ResponseParseError(`${describe(this.meta)}: response ${this.status} is not valid JSON`, { cause: err })
      throw stamp(e, this.meta, { status: this.status, contentType, snippet })
    }
  }

  /** The body as bytes, at most `maxResponseSize`. */
  async arrayBuffer (): Promise<ArrayBuffer> {
    this.claim()
    const buf = this.buffered !== undefined ? Buffer.from(this.buffered, 'utf8') : await this.readLimited()
    return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer
  }

  /** `true` once `json()`, `text()` or `arrayBuffer()` was called: a body can be read once. */
  get bodyUsed (): boolean {
    return this.used
  }

  private used = false
  private buffered: string | undefined = undefined
  private stream: Readable | null

  private claim (): void {
    if (this.used) {
      throw stamp(new InvalidRequestError(`${describe(this.meta)}: the response body was already read`), this.meta)
    }
    // Throws when the body was discarded for being left unread.
    if (this.unreadBody !== undefined) this.unreadBody.claim()
    this.used = true
  }

  /** Discards the body so the connection can be reused. Safe to call more than once. */
  async dump (): Promise<void> {
    await this.drain(Infinity)
  }

  /**
   * @internal Reads and discards at most `limit` bytes of the body; a body that goes on is destroyed (its connection
   * closed) instead of read to its end.
   */
  async drain (limit: number): Promise<void> {
    if (this.unreadBody !== undefined) this.unreadBody.release()
    const body = this.stream
    if (body === null || body.destroyed || body.readableEnded) return
    let size = 0
    try {
      for await (const chunk of body) {
        size += (chunk as Buffer).length
        if (size > limit) {
          this.destroy()
          return
        }
      }
    } catch {
      // a body that fails while being discarded has nothing left to give
    }
  }

  /** Destroys the body (closing or freeing its connection) without reading it. */
  destroy (): void {
    if (this.unreadBody !== undefined) this.unreadBody.release()
    const body = this.stream
    if (body === null || body.destroyed) return
    // undici's body emits 'error' (UND_ERR_ABORTED) when destroyed before its end; nobody reads it any more.
    body.on('error', ignore)
    body.destroy()
  }

  /** Content-length when the server sent one that fits the limit; throws when it does not. */
  private knownLength (): number | undefined {
    const raw = this.headers['content-length']
    if (raw === undefined || this.headers['content-encoding'] !== undefined) return undefined
    const n = Number(raw)
    if (!Number.isFinite(n)) return undefined
    if (n > this.meta.maxResponseSize) throw this.tooLarge(n)
    return n
  }

  /** @internal The error of a body over `maxResponseSize` (`size` when known); destroys the body. */
  tooLarge (size: number | undefined): Error {
    this.destroy()
    const limit = this.meta.maxResponseSize
    const e = new ResponseTooLargeError(
      `${describe(this.meta)}: response body ${size !== undefined ? `of ${size} bytes ` : ''}exceeds maxResponseSize ${limit}`)
    return stamp(e, this.meta, { status: this.status, limit })
  }

  private async readLimited (): Promise<Buffer> {
    const known = this.knownLength()
    const body = this.body as FastBody
    if (known !== undefined && typeof body.arrayBuffer === 'function') {
      try {
        return Buffer.from(await body.arrayBuffer())
      } catch (err) {
        throw toCallError(err, this.meta, this.meta.timeouts)
      }
    }
    const limit = this.meta.maxResponseSize
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of body) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer
        size += buf.length
        if (size > limit) throw this.tooLarge(undefined)
        chunks.push(buf)
      }
    } catch (err) {
      throw toCallError(err, this.meta, this.meta.timeouts)
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
  }
}

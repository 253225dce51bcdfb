import { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { inspect } from 'node:util'
import { parseCookie, type Cookie } from 'undici'
import { BodyChunks, asBuffer, bodyJson, bodyText } from './body-decoder'
import { InvalidRequestError, ResponseTooLargeError, describe, stamp, type CallTarget } from './errors'
import { toCallError } from './transport-errors'

/** Where a response came from and how much of it may be buffered. */
export interface ResponseMeta extends CallTarget {
  /** Origin the response came from (`http://host:port`). */
  origin: string
  /** Largest body `json()`/`text()`/`arrayBuffer()` read, in bytes. */
  maxResponseSize: number
  timeouts?: { connect: number, headers: number, body: number }
}

/**
 * @internal The call a response answers, as far as the response needs to know it: the pipeline's `CallContext` is
 * one (`./pipeline/attempt-call` marks responses with it). Narrow, so this module stays below the pipeline's types,
 * which depend on it.
 */
export interface ResponseCall {
  /** The call's bound logger (the inbound request's `reqId`). */
  readonly log: { warn: (obj: object, msg?: string) => void }
}

/**
 * @internal The watch on a body handed to the caller unread (`./unread-body`), as the response uses it: declared
 * here, so that the response depends on neither the watchdog nor the pipeline's types.
 */
export interface BodyWatch {
  /** `res.body` is being handed out: whoever takes the stream may read it later. */
  handOut: () => void
  /** The body is being read: throws the error saying why it cannot be, once it was discarded. */
  claim: () => void
  /** Nothing to watch any more: the body is being read, dumped or destroyed. */
  release: () => void
}

const ignore = (): void => {}

/**
 * What a service's HTTP cache (`cache` option) made of a call: `hit` (served from the cache, nothing sent), `revalidated`
 * (the upstream answered 304 to a conditional request: the stored body, refreshed), `miss` (the upstream's answer,
 * stored when it may be), `stale` (a stale entry served: within `stale-while-revalidate`, or because the upstream
 * failed within `staleIfError`).
 */
export type CacheStatus = 'hit' | 'revalidated' | 'miss' | 'stale'

/** A response from a downstream service. Read the body once: `json()`, `text()`, `arrayBuffer()` or `body`. */
export class HttpResponse {
  /** Status code. */
  readonly status: number
  /** Response headers, lower-case names (`set-cookie` is an array). */
  readonly headers: IncomingHttpHeaders
  /** How many attempts the call took (set by the retry policy; 1 without retries; 0 for a response served from the cache). */
  attempts = 1
  /** On a service with `cache`, what the cache made of the call; `undefined` on a service without one. */
  cache: CacheStatus | undefined = undefined
  /** @internal */
  readonly meta: ResponseMeta
  /** @internal The call whose attempt this is the answer of (set by the transport). */
  call: ResponseCall | undefined = undefined
  /** @internal The watch on a body handed to the caller unread (see `./unread-body`); `undefined` when none. */
  unreadBody: BodyWatch | undefined = undefined

  constructor (status: number, headers: IncomingHttpHeaders, body: Readable, meta: ResponseMeta) {
    this.status = status
    this.headers = headers
    this.stream = body
    this.meta = meta
  }

  /**
   * @internal A response whose body is read without a stream (the *Json helpers' transport, a response rebuilt from
   * stored bytes): `setBody()` gives it its body.
   */
  static unread (status: number, headers: IncomingHttpHeaders, meta: ResponseMeta): HttpResponse {
    return new HttpResponse(status, headers, null as unknown as Readable, meta)
  }

  /**
   * @internal The body of an `unread()` response, as bytes (any bytes: the reading methods decode them). Kept as
   * given, not copied: the caller hands it over.
   */
  setBody (bytes: Buffer): void {
    this.buffered = bytes
  }

  /** @internal The bytes of a body the transport read already and nobody has read yet (not consumed); else `undefined`. */
  peekBuffered (): Buffer | undefined {
    return this.used ? undefined : this.buffered
  }

  /** @internal `setBody()` with the UTF-8 bytes of `text`. */
  setText (text: string): void {
    this.buffered = Buffer.from(text, 'utf8')
  }

  /** The body as a stream; pass it to `reply.send()` to stream it on. */
  get body (): Readable {
    if (this.unreadBody !== undefined) this.unreadBody.handOut()
    let stream = this.stream
    if (stream === null) {
      // A body the transport read already: the same bytes as a stream (an empty one once it was read).
      stream = new Readable({ read () {} })
      if (this.buffered !== undefined && !this.used) stream.push(this.buffered)
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

  /** Absolute URL of the call (query values as sent, except the service's API key: `api_key=***`). */
  get url (): string {
    return this.meta.origin + this.meta.path
  }

  /**
   * What `util.inspect` (and `console.log`) shows: status, URL, attempts and headers, `set-cookie` values hidden.
   * Not the call (`call`) or the body stream: the call holds the request's headers, credentials included.
   */
  [inspect.custom] (depth: number, options: object): string {
    return `HttpResponse ${inspect(this.toJSON(), { ...options, depth: depth < 0 ? null : depth })}`
  }

  /** What `JSON.stringify` (a logger's serializer) shows: the same as `util.inspect`. */
  toJSON (): { status: number, url: string, attempts: number, headers: IncomingHttpHeaders } {
    const headers = this.headers['set-cookie'] === undefined ? this.headers : { ...this.headers, 'set-cookie': ['***'] }
    return { status: this.status, url: this.url, attempts: this.attempts, headers }
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

  /**
   * The body as text: UTF-8 (invalid sequences become U+FFFD), a leading byte order mark dropped, as undici's and
   * fetch's `text()`; at most `maxResponseSize` bytes.
   */
  async text (): Promise<string> {
    return bodyText(await this.bytes())
  }

  /**
   * The body parsed as JSON (its text as `text()` decodes it); `undefined` for an empty body (204, 304, HEAD,
   * content-length 0); `ResponseParseError` when it is not JSON.
   */
  async json<T = unknown> (): Promise<T> {
    if (this.status === 204 || this.status === 304 || this.meta.method === 'HEAD') {
      this.claim()
      this.stream?.resume()
      return undefined as T
    }
    return bodyJson(await this.bytes(), this) as T
  }

  /**
   * @internal The *Json helpers' read: the parsed body, at once when the pipeline already read it.
   */
  readJson (): unknown {
    const bytes = this.buffered
    if (bytes === undefined || this.used) return this.json()
    this.used = true
    this.buffered = undefined
    return bodyJson(bytes, this)
  }

  /**
   * @internal Reads the body into memory (at most `maxResponseSize`), inside the call's pipeline, so a body that
   * breaks off fails the attempt rather than the caller's later read; then calls `done` with this response (whose
   * body can still be read once) or `failed` with a typed error. Callbacks, not a promise: the transport settles its
   * own promise with them, a stage less per call.
   */
  buffer (done: (res: HttpResponse) => void, failed: (err: unknown) => void): void {
    this.readBytes().then((bytes) => {
      this.buffered = bytes
      done(this)
    }, failed)
  }

  /**
   * @internal The whole body as bytes, read now if it was not (at most `maxResponseSize`), for responses of other
   * callers made from it (request coalescing). The body counts as read.
   */
  takeBytes (): Promise<Buffer> {
    try {
      return Promise.resolve(this.bytes())
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** The body as bytes, at most `maxResponseSize`: a copy the caller may change. */
  async arrayBuffer (): Promise<ArrayBuffer> {
    const bytes = await this.bytes()
    // Copied: the bytes may share their memory with more (a socket's read, Buffer's pool, a cached response).
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
  }

  /** `true` once `json()`, `text()` or `arrayBuffer()` was called: a body can be read once. */
  get bodyUsed (): boolean {
    return this.used
  }

  private used = false
  /** The body's bytes, once read without a stream (`setBody`, `buffer`), until they are read. */
  private buffered: Buffer | undefined = undefined
  private stream: Readable | null

  /** Claims the body (see `claim`) and gives its bytes: those read already, else read now from the stream. */
  private bytes (): Buffer | Promise<Buffer> {
    this.claim()
    const bytes = this.buffered
    if (bytes === undefined) return this.readBytes()
    this.buffered = undefined
    return bytes
  }

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

  /**
   * @internal Gets rid of a body nobody will read (a retried failure, a redirect, a hedge that lost): a small one
   * (64 KiB at most) is read to its end so its connection is reused; a larger one is destroyed, and one of unknown
   * length (chunked, or decoded from a compressed one) is read up to the limit, then destroyed if it goes on.
   */
  discard (): Promise<void> {
    const limit = 64 * 1024
    const length = this.headers['content-length']
    if (length !== undefined && Number(length) > limit) {
      this.destroy()
      return Promise.resolve()
    }
    return this.drain(limit)
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

  /** Throws `ResponseTooLargeError` (the body destroyed unread) when the content-length is over the limit. */
  private checkLength (): void {
    const raw = this.headers['content-length']
    // A compressed body passed on as it is (`decompress: false`) is limited by its bytes as they come.
    if (raw === undefined || this.headers['content-encoding'] !== undefined) return
    const n = Number(raw)
    if (n > this.meta.maxResponseSize) throw this.tooLarge(n)
  }

  /** @internal The error of a body over `maxResponseSize` (`size` when known); destroys the body. */
  tooLarge (size: number | undefined): Error {
    this.destroy()
    const limit = this.meta.maxResponseSize
    const e = new ResponseTooLargeError(
      `${describe(this.meta)}: response body ${size !== undefined ? `of ${size} bytes ` : ''}exceeds maxResponseSize ${limit}`)
    return stamp(e, this.meta, { status: this.status, limit })
  }

  /**
   * Reads the body stream into memory, at most `maxResponseSize` bytes; rejects with a typed error when the body
   * fails, is destroyed before its end or is too large (then destroyed). Listeners rather than `for await`: no
   * promise per chunk; the chunks are kept as they come (see `BodyChunks`).
   */
  private readBytes (): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.checkLength()
      const body = this.body
      // Dumped already: nothing is left to read.
      if (body.readableEnded) {
        resolve(Buffer.alloc(0))
        return
      }
      if (body.destroyed) {
        reject(toCallError(body.errored ?? prematureClose(), this.meta, this.meta.timeouts))
        return
      }
      const chunks = new BodyChunks(this.meta.maxResponseSize)
      // The first outcome settles the read; what follows it ('close' after 'end' or 'error') is ignored.
      let settled = false
      const failed = (err: unknown): void => {
        if (settled) return
        settled = true
        reject(toCallError(err, this.meta, this.meta.timeouts))
      }
      body.on('data', (chunk: Buffer | Uint8Array | string) => {
        if (!settled && !chunks.add(asBuffer(chunk))) failed(this.tooLarge(undefined))
      })
      body.once('end', () => {
        settled = true
        resolve(chunks.bytes())
      })
      body.once('error', failed)
      body.once('close', () => { if (!settled) failed(prematureClose()) })
      body.resume()
    })
  }
}

/** The error Node gives a reader whose stream closed before its end. */
function prematureClose (): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
}


/**
 * Response body decoding (gzip, deflate, br), written here rather than taken from undici's `interceptors.decompress`.
 * Checked against undici 7.30.3 (lib/interceptor/decompress.js, docs/docs/api/Dispatcher.md), that interceptor:
 *
 * - is experimental: its first use prints an `ExperimentalWarning` ("DecompressInterceptor is experimental and subject
 *   to change") in the app's process;
 * - is composed onto a dispatcher and reads no per-request option: a call's `decompress: false` (bytes passed through
 *   to `reply.send`) would need a second dispatcher per service;
 * - decodes `deflate` with `createInflate` only: a raw deflate body, which some servers send and browsers accept,
 *   fails with `Z_DATA_ERROR` "incorrect header check" (tried); it also maps `compress` (LZW) to inflate;
 * - skips only status < 200, 204 and 304: a HEAD response or a 205 announcing `content-encoding: gzip` fails with
 *   `Z_BUF_ERROR` "unexpected end of file" (tried); error statuses are skipped by default (`skipErrorResponses`),
 *   where this client parses their bodies for `HttpStatusError`;
 * - caps with one `maxSize` for the dispatcher, off by default, which would also cap a body streamed to the caller;
 *   here the cap is the call's `maxResponseSize`, enforced by the readers that buffer;
 * - decodes as the bytes arrive, through zlib streams always: a body nobody reads is decoded anyway, and a small
 *   one pays a zlib stream's setup (below: decoding starts on the first read, and a small body is decoded in one
 *   synchronous call);
 * - reports a decoder failure as zlib's error through `onResponseError`, the path of a broken connection, and more
 *   than 5 codings as a plain `Error`: here both are `DecompressError`s naming the call, its status and coding,
 *   and the raw body's own failures pass through unchanged.
 *
 * What it has and this file has not: `zstd`, where Node's zlib has it (Node >= 22.15, not 20). This client does not
 * ask for it (`accept-encoding: gzip, deflate, br`), and leaves a body in a coding it does not know as it came.
 */
import { Readable, type Transform } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import {
  brotliDecompressSync, createBrotliDecompress, createGunzip, createInflate, createInflateRaw, gunzipSync, inflateRawSync,
  inflateSync, type ZlibOptions
} from 'node:zlib'
import { DecompressError, describe, stamp } from './errors'
import { kHeaderLimit, wireText } from './error-text'
import { HttpResponse, type ResponseMeta } from './response'

// Maps, not object literals: a coding named `constructor` or `__proto__` must not find a decoder on the prototype.
// `deflate` is the zlib format; a raw deflate stream (no zlib header, as some servers send) is decoded too, like
// browsers and undici's fetch do, when it is the outermost coding (its first bytes are then at hand).
const kDecoders = new Map<string, (head: Buffer | undefined) => Transform>([
  ['gzip', () => createGunzip()],
  ['x-gzip', () => createGunzip()],
  ['deflate', (head) => head !== undefined && !hasZlibHeader(head) ? createInflateRaw() : createInflate()],
  ['br', () => createBrotliDecompress()]
])

const kSyncDecoders = new Map<string, (buf: Buffer, options: ZlibOptions) => Buffer>([
  ['gzip', gunzipSync],
  ['x-gzip', gunzipSync],
  ['deflate', (buf, options) => hasZlibHeader(buf) ? inflateSync(buf, options) : inflateRawSync(buf, options)],
  ['br', brotliDecompressSync]
])

/** RFC 1950: compression method 8 in the low nibble of the first byte, and the two first bytes a multiple of 31. */
function hasZlibHeader (buf: Buffer): boolean {
  return buf.length < 2 || ((buf[0] & 0x0f) === 8 && ((buf[0] << 8) | buf[1]) % 31 === 0)
}

// Bodies up to this many bytes on the wire are decoded in one call, when their output stays under the second limit
// (and under the response's maxResponseSize: a bigger output is decoded again as a stream, which only readers that
// buffer limit).
const kSmallBody = 64 * 1024
const kSyncOutputLimit = 1024 * 1024
const kNothing: Buffer[] = []

type Decoder = (head: Buffer | undefined) => Transform
type SyncDecoder = (buf: Buffer, options: ZlibOptions) => Buffer

function ignore (): void {}

// A body compressed more than a few times over is an attack, not an optimisation (urllib3 and curl cap it too).
const kMaxCodings = 5

/**
 * The response for a body sent with a `content-encoding`: its `body` decodes gzip, deflate and br (several codings
 * are undone last first), and its headers lose `content-encoding` and `content-length`, which describe the encoded
 * bytes (so `reply.send(res.body)` with those headers stays correct, and buffered reads count decoded bytes against
 * `maxResponseSize`). A response without a body (HEAD, 1xx, 204, 205, 304), or with a coding this client does not
 * know, is left as it came.
 */
export function decodeResponse (status: number, headers: IncomingHttpHeaders, raw: Readable, meta: ResponseMeta): HttpResponse {
  const codings = status < 200 || status === 204 || status === 205 || status === 304 || meta.method === 'HEAD'
    ? undefined
    : parseCodings(headers['content-encoding'])
  if (codings === undefined) return new HttpResponse(status, headers, raw, meta)
  const { 'content-encoding': encoding, 'content-length': _length, ...rest } = headers
  const body = new DecodedBody(raw, codings, decodeError(meta, status, String(encoding), codings), meta.maxResponseSize)
  return new HttpResponse(status, rest, body, meta)
}

/** The codings to undo, outermost first; `undefined` when there is nothing to do or a coding is unknown. */
function parseCodings (value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined
  const listed = (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',')
  const codings: string[] = []
  for (let i = listed.length - 1; i >= 0; i--) {
    const coding = listed[i].trim()
    if (coding === '' || coding === 'identity') continue
    if (!kDecoders.has(coding)) return undefined
    codings.push(coding)
  }
  return codings.length > 0 ? codings : undefined
}

// The content-encoding header is the upstream's text (known codings may come with any amount of padding and
// `identity`): it stays in `encoding`, capped and cleaned. The message names only codings of this client's own list,
// and `why` is zlib's text or ours.
function decodeError (meta: ResponseMeta, status: number, encoding: string, codings: string[]): (cause: Error | undefined, why: string) => Error {
  return (cause, why) => {
    const named = codings.length <= kMaxCodings ? codings.slice().reverse().join(', ') : 'compressed'
    return stamp(new DecompressError(`${describe(meta)}: cannot decode the ${named} response body of status ${status}: ${why}`, { cause }),
      meta, { status, encoding: wireText(encoding, kHeaderLimit) })
  }
}

/**
 * The decoded body. Decoding starts on the first read, so a body nobody reads is never decoded and cannot fail
 * unheard; destroying it destroys the raw body (freeing or closing its connection) and the decoders. Decoder
 * failures become `DecompressError`s; failures of the raw body (socket, timeouts, aborts) pass through unchanged.
 *
 * A small body (the usual compressed JSON) is gathered and decoded in one synchronous call: zlib streams cost about
 * 100 µs of CPU per body on these machines, a one-shot decode about 15 µs. Its output is capped, so a bomb costs at
 * most `kSyncOutputLimit` bytes before it is handed to the streaming decoders like any larger body.
 */
class DecodedBody extends Readable {
  private readonly raw: Readable
  private readonly codings: string[]
  private readonly fail: (cause: Error | undefined, why: string) => Error
  private decoders: Transform[] | undefined = undefined
  private gathered: Buffer[] | undefined = undefined
  private size = 0

  private readonly syncOptions: ZlibOptions

  constructor (raw: Readable, codings: string[], fail: (cause: Error | undefined, why: string) => Error, maxResponseSize: number) {
    super()
    this.raw = raw
    this.codings = codings
    this.fail = fail
    this.syncOptions = { maxOutputLength: Math.min(kSyncOutputLimit, maxResponseSize + 1) }
    // Listening from the start: a raw body that fails (its connection, a timeout, an abort) before anybody reads the
    // decoded one must not throw from it either. A later read still fails with the error: the stream keeps it.
    raw.on('error', (err) => {
      if (this.listenerCount('error') === 0) this.on('error', ignore)
      this.destroy(err)
    })
  }

  /** @internal The raw (still encoded) body: whether it has all come in tells whether its connection is free. */
  get source (): Readable {
    return this.raw
  }

  override _read (): void {
    if (this.decoders !== undefined) {
      this.decoders[this.decoders.length - 1].resume()
      return
    }
    if (this.gathered !== undefined) return
    if (this.codings.length > kMaxCodings) {
      this.destroy(this.fail(undefined, `more than ${kMaxCodings} content codings`))
      return
    }
    this.gathered = []
    this.raw.on('data', this.onData)
    this.raw.on('end', this.onEnd)
  }

  private readonly onData = (chunk: Buffer): void => {
    const gathered = this.gathered as Buffer[]
    gathered.push(chunk)
    this.size += chunk.length
    if (this.size <= kSmallBody) return
    const raw = this.raw
    raw.off('data', this.onData)
    raw.off('end', this.onEnd)
    raw.pause()
    this.stream(gathered, false)
  }

  private readonly onEnd = (): void => {
    const raw = Buffer.concat(this.gathered as Buffer[], this.size)
    this.gathered = kNothing
    if (raw.length === 0) {
      // An empty body is not a broken one, though no decoder accepts zero bytes.
      this.push(null)
      return
    }
    let out: Buffer = raw
    try {
      for (const coding of this.codings) out = (kSyncDecoders.get(coding) as SyncDecoder)(out, this.syncOptions)
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') this.stream([raw], true)
      else this.destroy(this.fail(err as Error, (err as Error).message))
      return
    }
    if (out.length > 0) this.push(out)
    this.push(null)
  }

  /** Decodes through zlib streams: `head` first, then the rest of the raw body unless it has already ended. */
  private stream (head: Buffer[], ended: boolean): void {
    const start = head.length === 0 ? undefined : head.length === 1 || head[0].length >= 2 ? head[0] : Buffer.concat(head)
    const decoders = this.codings.map((coding, i) => (kDecoders.get(coding) as Decoder)(i === 0 ? start : undefined))
    this.decoders = decoders
    for (const decoder of decoders) {
      decoder.on('error', (err: Error) => this.destroy(this.fail(err, err.message)))
    }
    for (let i = 1; i < decoders.length; i++) decoders[i - 1].pipe(decoders[i])
    const last = decoders[decoders.length - 1]
    last.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) last.pause()
    })
    last.on('end', () => this.push(null))
    const first = decoders[0]
    for (const chunk of head) first.write(chunk)
    if (ended) first.end()
    else this.raw.pipe(first)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.raw.destroyed) this.raw.destroy()
    if (this.decoders !== undefined) for (const decoder of this.decoders) decoder.destroy()
    callback(err)
  }
}

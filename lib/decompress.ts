import { Readable, type Transform } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { DecompressError, describe, stamp } from './errors'
import { HttpResponse, type ResponseMeta } from './response'

const kDecoders: Record<string, () => Transform> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress
}

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
  const body = new DecodedBody(raw, codings, decodeError(meta, status, String(encoding)))
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
    if (kDecoders[coding] === undefined) return undefined
    codings.push(coding)
  }
  return codings.length > 0 ? codings : undefined
}

function decodeError (meta: ResponseMeta, status: number, encoding: string): (cause: Error | undefined, why: string) => Error {
  return (cause, why) => stamp(new DecompressError(
    `${describe(meta)}: cannot decode the ${encoding} response body of status ${status}: ${why}`, { cause }), meta, { status, encoding })
}

/**
 * The decoded body. Decoding starts on the first read, so a body nobody reads is never decoded and cannot fail
 * unheard; destroying it destroys the raw body (freeing or closing its connection) and the decoders. Decoder
 * failures become `DecompressError`s; failures of the raw body (socket, timeouts, aborts) pass through unchanged.
 */
class DecodedBody extends Readable {
  private readonly raw: Readable
  private readonly codings: string[]
  private readonly fail: (cause: Error | undefined, why: string) => Error
  private decoders: Transform[] | undefined = undefined

  constructor (raw: Readable, codings: string[], fail: (cause: Error | undefined, why: string) => Error) {
    super()
    this.raw = raw
    this.codings = codings
    this.fail = fail
    // Listening from the start: a raw body that fails before it is read would otherwise throw from an unread stream.
    raw.on('error', (err) => this.destroy(err))
  }

  override _read (): void {
    if (this.decoders !== undefined) {
      this.decoders[this.decoders.length - 1].resume()
      return
    }
    if (this.codings.length > kMaxCodings) {
      this.destroy(this.fail(undefined, `more than ${kMaxCodings} content codings`))
      return
    }
    const decoders = this.codings.map((coding) => kDecoders[coding]())
    this.decoders = decoders
    const first = decoders[0]
    for (const decoder of decoders) {
      decoder.on('error', (err: Error & { code?: string }) => {
        // An empty body is not a broken one, though no decoder accepts zero bytes as a stream.
        if (decoder === first && (first as unknown as { bytesWritten: number }).bytesWritten === 0 && err.code === 'Z_BUF_ERROR') {
          this.push(null)
          this.stopDecoders()
          return
        }
        this.destroy(this.fail(err, err.message))
      })
    }
    let source: Readable = this.raw
    for (const decoder of decoders) source = source.pipe(decoder)
    const last = decoders[decoders.length - 1]
    last.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) last.pause()
    })
    last.on('end', () => this.push(null))
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.raw.destroyed) this.raw.destroy()
    this.stopDecoders()
    callback(err)
  }

  private stopDecoders (): void {
    if (this.decoders === undefined) return
    for (const decoder of this.decoders) decoder.destroy()
  }
}

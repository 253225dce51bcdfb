import { randomBytes } from 'node:crypto'
import { basename } from 'node:path'
import { Readable } from 'node:stream'
import { InvalidRequestError } from './errors'

/** A file part with its name and type spelled out. */
export interface MultipartFile {
  /** The content. A stream is read once, while the request is sent: the call is then never retried. */
  value: string | Buffer | Uint8Array | Blob | Readable
  /**
   * The file name sent in `content-disposition`.
   * @default the File's name, a file stream's base name, else `'blob'`
   */
  filename?: string
  /**
   * The part's `content-type`.
   * @default the Blob's type, else `'application/octet-stream'`
   */
  contentType?: string
}

/**
 * One value of a multipart form: strings, numbers and booleans are text fields; bytes, Blobs (`fs.openAsBlob()`
 * streams a file from disk) and streams are file parts.
 */
export type MultipartValue = string | number | boolean | Buffer | Uint8Array | Blob | Readable | MultipartFile

/** Form fields by name; an array repeats the name, `undefined` and `null` leave the field out. */
export type MultipartFields = Record<string, MultipartValue | ReadonlyArray<MultipartValue> | null | undefined>

/**
 * A multipart body that contains no stream: undici reads it afresh through a new iterator on every attempt, so
 * the call is replayable (retried and hedged like any other) and no Blob is ever read whole into memory.
 */
export class MultipartBody implements AsyncIterable<Buffer> {
  private readonly service: string
  private readonly parts: Part[]
  private readonly end: Buffer

  /** @internal */
  constructor (service: string, parts: Part[], end: Buffer) {
    this.service = service
    this.parts = parts
    this.end = end
  }

  [Symbol.asyncIterator] (): AsyncIterator<Buffer> {
    return generate(this.parts, this.end, this.service)
  }
}

/** What `encodeMultipart` gives the call: the body, its `content-type` and, when every part has a size, its length. */
export interface EncodedMultipart {
  /** One Buffer when small, a replayable `MultipartBody`, or a Readable (sent once) when a part is a stream. */
  body: Buffer | MultipartBody | Readable
  contentType: string
  length: number | undefined
}

interface Part {
  name: string
  head: Buffer
  content: Buffer | Blob | Readable
}

const kCRLF = Buffer.from('\r\n')
// Small text-only forms are sent as one Buffer: one write, and replayable as is.
const kOneBufferLimit = 64 * 1024
const kBadHeaderValue = /[\r\n\0]/
const kEscaped = /["\r\n]/g

/**
 * Encodes a `FormData` or a plain object of fields as `multipart/form-data` with a random boundary. Validation is
 * synchronous (bad input throws `InvalidRequestError`); contents are read only while the request is sent, and never
 * buffered whole.
 */
export function encodeMultipart (service: string, input: unknown): EncodedMultipart {
  const boundary = `----HttpServicesFormBoundary${randomBytes(16).toString('hex')}`
  const parts: Part[] = []
  const add = (name: string, value: unknown): void => {
    parts.push(toPart(service, boundary, name, value))
  }
  if (isFormData(input)) {
    for (const [name, value] of input.entries()) add(name, value)
  } else if (isPlainObject(input)) {
    for (const name of Object.keys(input)) {
      const value = input[name]
      if (value === undefined || value === null) continue
      if (Array.isArray(value)) for (const item of value) add(name, item)
      else add(name, value)
    }
  } else {
    throw new InvalidRequestError(`${service}: multipart must be a FormData or an object of fields`)
  }
  const end = Buffer.from(`--${boundary}--\r\n`)
  const contentType = `multipart/form-data; boundary=${boundary}`
  let length: number | undefined = end.length
  let buffers = true
  for (const part of parts) {
    const c = part.content
    if (c instanceof Readable) {
      length = undefined
      buffers = false
    } else if (length !== undefined) {
      length += part.head.length + (Buffer.isBuffer(c) ? c.length : c.size) + 2
      if (!Buffer.isBuffer(c)) buffers = false
    }
  }
  if (length === undefined) {
    const body = Readable.from(generate(parts, end, service), { objectMode: false })
    // Sent whole, every stream part has ended; a body closed before its end (the call failed, was aborted, never
    // sent) leaves the rest unread: they are destroyed so no file descriptor stays open.
    body.once('close', () => {
      for (const part of parts) if (part.content instanceof Readable && !part.content.destroyed) part.content.destroy()
    })
    return { body, contentType, length }
  }
  if (buffers && length <= kOneBufferLimit) {
    const chunks: Buffer[] = []
    for (const part of parts) chunks.push(part.head, part.content as Buffer, kCRLF)
    chunks.push(end)
    return { body: Buffer.concat(chunks, length), contentType, length }
  }
  return { body: new MultipartBody(service, parts, end), contentType, length }
}

/**
 * Destroys every stream of a form's fields (in `{ value }` wrappers and lists too): the form will not be sent (the
 * client calls it for every call it refuses, a form it refused included).
 */
export function destroyStreams (input: unknown): void {
  const values: unknown[] = isFormData(input) ? [...input.values()] : isPlainObject(input) ? Object.values(input) : []
  for (const value of values.flat()) {
    const content = isPlainObject(value) ? value.value : value
    if (content instanceof Readable && !content.destroyed) content.destroy()
  }
}

function toPart (service: string, boundary: string, name: string, value: unknown): Part {
  let content: Buffer | Blob | Readable
  let filename: string | undefined
  let type: string | undefined
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    content = Buffer.from(String(value), 'utf8')
  } else if (isContent(value)) {
    content = toContent(value)
    filename = defaultName(value)
    type = defaultType(value)
  } else if (isPlainObject(value) && isContent(value.value)) {
    content = toContent(value.value)
    filename = optionalString(service, name, 'filename', value.filename) ?? defaultName(value.value)
    type = optionalString(service, name, 'contentType', value.contentType) ?? defaultType(value.value)
    if (kBadHeaderValue.test(type)) {
      throw new InvalidRequestError(`${service}: multipart field ${JSON.stringify(name)}: contentType holds a CR, LF or NUL character`)
    }
  } else {
    throw new InvalidRequestError(`${service}: multipart field ${JSON.stringify(name)} must be a string, number, boolean, ` +
      'Buffer, Uint8Array, Blob, Readable stream or { value, filename, contentType }')
  }
  let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escape(name)}"`
  if (filename !== undefined) head += `; filename="${escape(filename)}"`
  head += type !== undefined ? `\r\nContent-Type: ${type}\r\n\r\n` : '\r\n\r\n'
  return { name, head: Buffer.from(head, 'utf8'), content }
}

function isContent (value: unknown): value is string | Uint8Array | Blob | Readable {
  return typeof value === 'string' || value instanceof Uint8Array || value instanceof Blob || value instanceof Readable
}

function toContent (value: string | Uint8Array | Blob | Readable): Buffer | Blob | Readable {
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  return value as Buffer | Blob | Readable
}

function defaultName (value: unknown): string {
  if (value instanceof File && value.name !== '') return value.name
  const path = (value as { path?: unknown }).path
  if (value instanceof Readable && typeof path === 'string') return basename(path)
  return 'blob'
}

function defaultType (value: unknown): string {
  return value instanceof Blob && value.type !== '' ? value.type : 'application/octet-stream'
}

function optionalString (service: string, name: string, key: string, value: unknown): string | undefined {
  if (value === undefined || typeof value === 'string') return value
  throw new InvalidRequestError(`${service}: multipart field ${JSON.stringify(name)}: ${key} must be a string`)
}

/** Quotes in names and file names are percent-encoded, as browsers and undici's FormData do. */
function escape (text: string): string {
  return text.replace(kEscaped, (c) => c === '"' ? '%22' : c === '\r' ? '%0D' : '%0A')
}

function isFormData (value: unknown): value is FormData {
  // Duck-typed like undici, so the FormData of another undici copy works too.
  return typeof value === 'object' && value !== null && (value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'FormData' &&
    typeof (value as { entries?: unknown }).entries === 'function'
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** The encoded body, part by part; small buffers are coalesced so a form of text fields is a few writes. */
async function * generate (parts: Part[], end: Buffer, service: string): AsyncGenerator<Buffer> {
  let pending: Buffer[] = []
  let size = 0
  for (const part of parts) {
    const c = part.content
    pending.push(part.head)
    size += part.head.length
    if (Buffer.isBuffer(c) && c.length <= kOneBufferLimit) {
      pending.push(c)
      size += c.length
    } else {
      yield Buffer.concat(pending, size)
      pending = []
      size = 0
      if (Buffer.isBuffer(c)) {
        yield c
      } else if (c instanceof Readable) {
        for await (const chunk of c) yield bytes(service, part.name, chunk)
      } else {
        for await (const chunk of c.stream()) yield bytes(service, part.name, chunk)
      }
    }
    pending.push(kCRLF)
    size += 2
    if (size >= kOneBufferLimit) {
      yield Buffer.concat(pending, size)
      pending = []
      size = 0
    }
  }
  pending.push(end)
  yield Buffer.concat(pending, size + end.length)
}

function bytes (service: string, name: string, chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8')
  throw new InvalidRequestError(`${service}: multipart field ${JSON.stringify(name)}: the stream gave a ${typeof chunk}, not bytes`)
}

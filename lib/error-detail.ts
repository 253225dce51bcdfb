import { bodyText } from './body-decoder'
import { HttpStatusError, describe, stamp, withRetryAfter } from './errors'
import { kDetailLimit, wireText } from './error-text'
import { requestedDelay } from './pipeline/retry-after'
import type { HttpResponse } from './response'

/** Most bytes of an error body read for its detail; the rest is discarded. */
const kErrorBodyLimit = 64 * 1024

function firstString (...values: unknown[]): string | undefined {
  for (const v of values) if (typeof v === 'string' && v.length > 0) return v
  return undefined
}

/**
 * The human-readable detail of a common error body: RFC 9457 problem+json (`title` / `detail`),
 * `{ error: { message } }`, `{ error }`, `{ detail }`, `{ message }`, else the text itself; at most 200 characters,
 * without control characters or ANSI escapes (it reaches logs). It is the upstream's text, so it stays out of the
 * error's message, which Fastify sends to clients.
 */
export function errorDetail (parsed: unknown, text: string): string | undefined {
  if (parsed !== null && typeof parsed === 'object') {
    const o = parsed as Record<string, unknown>
    const err = o.error
    const nested = err !== null && typeof err === 'object' ? (err as Record<string, unknown>).message : undefined
    const problem = typeof o.title === 'string' && typeof o.detail === 'string' ? `${o.title}: ${o.detail}` : undefined
    return nonEmpty(wireText(firstString(problem, nested, err, o.detail, o.message, o.title, o.error_description), kDetailLimit))
  }
  return nonEmpty(wireText(text, kDetailLimit))
}

function nonEmpty (text: string | undefined): string | undefined {
  return text === undefined || text.length === 0 ? undefined : text
}

/**
 * Reads at most 64 KiB of an error response (the rest is destroyed, never buffered) and returns its detail and,
 * when it was JSON, the parsed body.
 */
export async function readErrorDetail (res: HttpResponse): Promise<{ detail?: string, body?: unknown }> {
  if (res.meta.method === 'HEAD') {
    res.destroy()
    return {}
  }
  const chunks: Buffer[] = []
  let size = 0
  let truncated = false
  try {
    for await (const chunk of res.body) {
      const buf = chunk as Buffer
      chunks.push(buf)
      size += buf.length
      if (size >= kErrorBodyLimit) {
        truncated = true
        break
      }
    }
  } catch {
    // a body that breaks off still leaves what was read
  }
  res.destroy()
  const text = bodyText(Buffer.concat(chunks, size).subarray(0, kErrorBodyLimit))
  let parsed: unknown
  const type = res.headers['content-type']
  if (!truncated && typeof type === 'string' && /[/+]json\b/i.test(type)) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
  }
  return { detail: errorDetail(parsed, text), body: parsed }
}

/**
 * The `HttpStatusError` a client throws for an error response (its body read for the detail, then destroyed):
 * `statusCode` 502, or the downstream status with `passthroughStatus`.
 */
export async function statusError (res: HttpResponse, passthroughStatus: boolean): Promise<HttpStatusError> {
  const meta = res.meta
  const { detail, body } = await readErrorDetail(res)
  // The detail is the upstream's text: it stays in `detail`, out of the message Fastify sends to clients.
  const e = new HttpStatusError(`${describe(meta)}: downstream answered ${res.status}`)
  stamp(e, meta, { status: res.status, detail, attempts: res.attempts })
  // Not enumerable: a logged error (Fastify logs every 5xx it sends) must carry neither the downstream's set-cookie
  // nor its whole error body.
  Object.defineProperty(e, 'responseHeaders', { value: res.headers, enumerable: false, writable: true, configurable: true })
  Object.defineProperty(e, 'body', { value: body, enumerable: false, writable: true, configurable: true })
  // The wait the downstream asked for (Retry-After, or X-RateLimit-Reset on a 429) travels on to our own caller.
  const wait = requestedDelay(res.status, res.headers)
  if (wait !== undefined) withRetryAfter(e, wait / 1000)
  if (passthroughStatus) e.statusCode = res.status
  return e
}

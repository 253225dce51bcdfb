import { Readable } from 'node:stream'
import type { HttpResponse } from './response'

function ignore (): void {}

/**
 * `true` when a response's body is over, or can hold no data: a HEAD response, 204, 304 or `content-length: 0`.
 * undici's body stream of such a response emits no 'close' until someone reads it, so it may never come.
 */
export function bodyDone (res: HttpResponse): boolean {
  const body = res.bodyStream
  // No stream: the transport read the body itself.
  return body === null || body.destroyed || body.readableEnded || res.status === 204 || res.status === 304 ||
    res.meta.method === 'HEAD' || res.headers['content-length'] === '0'
}

/**
 * Runs `fn` once the response's body is done: at once when `bodyDone(res)`, else once the body stream closes (read
 * to its end, or destroyed). For per-call cleanup (timers, listeners) that guards the body. The body is not read:
 * the caller may still stream it.
 */
export function whenBodyDone (res: HttpResponse, fn: () => void): void {
  if (bodyDone(res)) fn()
  else (res.bodyStream as Readable).once('close', fn)
}

/**
 * The body to hand over for a 204 or 304 answer, which can hold no data: an empty, ended stream. undici fails such an
 * answer when it carries a `content-length` (RFC 9110 allows one on a 304; plain `node:http` sends it), after the
 * response was handed over: its own body would give that error to whoever reads it. `raw`, undici's body, is read to
 * its end (or failure) unheard, so undici lets go of it.
 */
export function emptyBody (raw: Readable): Readable {
  raw.on('error', ignore)
  raw.resume()
  const body = new Readable({ read () {} })
  body.push(null)
  return body
}

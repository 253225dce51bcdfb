import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { InvalidRequestError, describe, stamp } from './errors'
import { HttpResponse } from './response'

/**
 * A handler may return an `HttpResponse` (or pass it to `reply.send()`): the reply is then the downstream's answer,
 * as @fastify/reply-from sends one: its status, its headers without the hop-by-hop ones, and its body streamed.
 *
 * Fastify serializes any other object to JSON (an `HttpResponse` holds its call and its stream: "Converting circular
 * structure to JSON"), and a preSerialization hook cannot make a payload a stream by itself: its new payload is
 * serialized too. So the hook hands over the body and gives this reply a serializer that passes it on as it is (once:
 * an error sent afterwards is serialized as usual). A reply whose content type was set to a non-JSON one is not
 * serialized by Fastify: the onSend hook does the same there. For any other payload each hook costs an `instanceof`.
 */

/** Headers about one connection, not the message (RFC 9110 7.6.1): a proxy drops them. `proxy-*` go too. */
const kHopByHop = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

type Done = (err: Error | null, payload?: unknown) => void

/** preSerialization hook: an `HttpResponse` payload is sent as the downstream answered, not serialized. */
export function sendResponseUnserialized (
  _request: FastifyRequest, reply: FastifyReply, payload: unknown, done: Done
): void {
  if (!(payload instanceof HttpResponse)) {
    done(null, payload)
    return
  }
  const body = takeOver(reply, payload, done)
  if (body === undefined) return
  reply.serializer(function passBodyOnce () {
    reply.serializer(null as unknown as (payload: unknown) => string)
    return body as unknown as string
  })
  done(null, body)
}

/** onSend hook: an `HttpResponse` that skipped serialization (a non-JSON content type was set) is sent the same way. */
export function sendResponseOnSend (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: Done): void {
  if (!(payload instanceof HttpResponse)) {
    done(null, payload)
    return
  }
  const body = takeOver(reply, payload, done)
  if (body !== undefined) done(null, body)
}

/** `replyWith` for a hook: the body to send, or `undefined` once `done` has the error that kept it from being sent. */
function takeOver (reply: FastifyReply, res: HttpResponse, done: Done): Readable | undefined {
  try {
    return replyWith(reply, res)
  } catch (err) {
    done(err as Error)
    return undefined
  }
}

/**
 * Sets the reply's status and headers from `res` and returns its body to send. Throws, the reply untouched, for a
 * response whose body was read already or whose status Fastify cannot send (its body is then destroyed, so its
 * connection is not held).
 */
function replyWith (reply: FastifyReply, res: HttpResponse): Readable {
  if (res.bodyUsed) {
    const message = `${describe(res.meta)}: the response body was already read, so the response cannot be sent`
    throw stamp(new InvalidRequestError(message), res.meta)
  }
  const status = res.status
  try {
    reply.code(status)
  } catch (err) {
    res.destroy()
    throw err
  }
  const headers = res.headers
  const named = connectionOptions(headers.connection)
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || kHopByHop.has(name) || name.startsWith('proxy-')) continue
    if (named !== undefined && named.includes(name)) continue
    reply.header(name, value)
  }
  // Fastify labelled the object it was about to serialize as JSON: the label is the downstream's, or none.
  if (headers['content-type'] === undefined) reply.removeHeader('content-type')
  if (status === 204) {
    reply.removeHeader('content-length')
  } else if (res.meta.method === 'HEAD' && status !== 304) {
    // The answer to a HEAD call gives the length of a body it does not hold: right for a HEAD reply, not for others.
    if (reply.request.method !== 'HEAD') reply.header('content-length', '0')
  } else if (res.bodyStream === null) {
    // A body the pipeline read into memory is sent again as its bytes: decoded ones when the upstream compressed it, so
    // the upstream's content-length may not be theirs.
    reply.removeHeader('content-length')
  }
  // An (empty) stream even for an answer without a body: Fastify drains it, and its HEAD routes take no `null`.
  return res.body
}

/** The header names a `connection` header lists (lower case): hop-by-hop too. */
function connectionOptions (value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined
  return (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',').map((token) => token.trim())
}

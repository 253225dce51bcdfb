import {
  ClientClosedError,
  ConnectionError,
  InvalidRequestError,
  RequestAbortedError,
  TimeoutError,
  TlsError,
  describe,
  isHttpServicesError,
  stamp,
  type CallTarget,
  type HttpServicesError,
  type TimeoutPhase
} from './errors'
import { kDetailLimit, wireText } from './error-text'

const kTimeoutPhases: Record<string, TimeoutPhase> = {
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'headers',
  UND_ERR_BODY_TIMEOUT: 'body'
}

const kClosedCodes = new Set(['UND_ERR_CLOSED', 'UND_ERR_DESTROYED'])

// undici refuses the request itself (a header value with a control character, `transfer-encoding`, `upgrade` or
// `expect` set by the caller …) before sending it: a bad call, not a downstream failure. So is a stream body longer
// or shorter than the caller's `content-length` (undici stops sending it): never counted by a breaker, never retried.
const kInvalidRequestCodes = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'])

const kTlsCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
  'EPROTO'
])

function isTlsCode (code: string): boolean {
  return kTlsCodes.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')
}

/** The system or undici code of an error (or of its `cause`). */
export function errorCode (err: unknown): string | undefined {
  const e = err as { code?: unknown, cause?: { code?: unknown } } | null | undefined
  if (e == null) return undefined
  if (typeof e.code === 'string') return e.code
  if (e.cause != null && typeof e.cause.code === 'string') return e.cause.code
  return undefined
}

/**
 * The status a proxy answered a `CONNECT` with, for a `ConnectionError` of errno `ERR_PROXY_CONNECT_STATUS`
 * (`lib/proxy.ts` makes it with the proxy's failure as its `cause`, which carries the status); `undefined` for any
 * other error. The tunnel was never opened, so the request never reached the upstream.
 */
export function proxyConnectStatus (err: { errno?: string, cause?: unknown }): number | undefined {
  if (err.errno !== 'ERR_PROXY_CONNECT_STATUS') return undefined
  const status = (err.cause as { status?: unknown } | null | undefined)?.status
  return typeof status === 'number' ? status : undefined
}

const kShared = new WeakSet<object>()

/**
 * The error a closing service destroys its dispatcher with: every call it aborts reaches `toCallError` with this one
 * object, which then gives each call its own `ClientClosedError` (with this one as `cause`), stamped with that call.
 */
export function sharedClosedError (message: string): ClientClosedError {
  const e = new ClientClosedError(message)
  kShared.add(e)
  return e
}

/**
 * Turns whatever undici or Node threw during a call into one of this library's typed errors, stamped with the
 * call's target. Errors of this library pass through (stamped if they were not).
 */
export function toCallError (err: unknown, target: CallTarget, timeouts?: { connect: number, headers: number, body: number }): HttpServicesError {
  if (isHttpServicesError(err)) {
    // One reason aborts every call a closing dispatcher still holds: each call gets an error of its own.
    if (kShared.has(err)) return stamp(new ClientClosedError(`${describe(target)}: ${err.message}`, { cause: err }), target)
    return stamp(err, target)
  }
  const code = errorCode(err) ?? ''
  const where = describe(target)
  const phase = kTimeoutPhases[code]
  if (phase !== undefined) {
    const limit = timeouts?.[phase as 'connect' | 'headers' | 'body']
    const e = new TimeoutError(`${where}: ${phase} timeout${limit !== undefined ? ` after ${limit} ms` : ''}`, { cause: err })
    return stamp(e, target, { phase, timeout: limit })
  }
  if (kClosedCodes.has(code)) {
    return stamp(new ClientClosedError(`${where}: service client is closed`, { cause: err }), target)
  }
  if (code === 'UND_ERR_ABORTED' || (err as Error)?.name === 'AbortError') {
    return stamp(new RequestAbortedError(`${where}: aborted`, { cause: err }), target)
  }
  if (kInvalidRequestCodes.has(code)) {
    return stamp(new InvalidRequestError(`${where}: ${failureText(err, '')}`, { cause: err }), target)
  }
  if (isTlsCode(code)) {
    // Node's TLS messages quote the upstream's certificate (its names, its issuer): the code says what failed.
    const e = new TlsError(`${where}: TLS failure ${code}`, { cause: err })
    return stamp(e, target, { errno: code })
  }
  const e = new ConnectionError(`${where}: ${failureText(err, code)}`, { cause: err })
  return stamp(e, target, { errno: code !== '' ? code : undefined })
}

/**
 * What a failure's message may say, for an error message Fastify sends to end clients: a system error gives its
 * call and code only (`connect ECONNREFUSED`), since Node's message names the address (`… 10.0.0.7:8080`) or host;
 * any other error (undici's fixed texts, a caller's body stream failing) its code and its message, capped and without
 * control characters. The whole error stays readable as `cause`, and pino logs its message too.
 */
function failureText (err: unknown, code: string): string {
  const e = err as { message?: unknown, syscall?: unknown } | null | undefined
  if (typeof e?.syscall === 'string') return `${e.syscall} ${code}`.trimEnd()
  const message = wireText(typeof e?.message === 'string' ? e.message : String(err), kDetailLimit) ?? ''
  return code !== '' ? `${code} ${message}`.trimEnd() : message
}

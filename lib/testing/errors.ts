import { defineError } from '../define-error'
import { HttpServicesError } from '../errors'
import type { PendingMock } from './types'

/**
 * A call that no mock interceptor matched. It names the service, method and path (query included: it is a test
 * double, and the query is often what differs) and lists the service's pending interceptors. It is not a
 * transport error, so no retry policy retries it.
 */
export interface MockUnmatchedError extends HttpServicesError {
  /** The origin the call went to. */
  origin?: string
  /** Interceptors of the service that were still waiting for a call. */
  pending: PendingMock[]
}

export const MockUnmatchedError = defineError<MockUnmatchedError>(
  'MockUnmatchedError', 'HTTP_SERVICES_ERR_MOCK_UNMATCHED', 500, HttpServicesError)

/**
 * An error like the ones Node's sockets raise (`code` set), for `replyWithError()`: the client turns it into the
 * same `ConnectionError` a real reset or refused connection gives, which retry policies treat as such.
 *
 * @param code e.g. `'ECONNRESET'`, `'ECONNREFUSED'`, `'EPIPE'`
 */
export function networkError (code = 'ECONNRESET', message = code === 'ECONNRESET' ? 'socket hang up' : `connect ${code}`): Error {
  return Object.assign(new Error(message), { code })
}

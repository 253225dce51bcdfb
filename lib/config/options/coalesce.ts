import { kCredentialHeaders } from '../../credential-headers'
import { arrayOf, fail, invalid, type Checker } from '../checkers'
import { headerName } from '../values'
import type { ResolvedAuth } from './auth'
import { defineGroup, type Spec } from './group'

/** Request coalescing: identical GETs in flight share one upstream request. */
export interface CoalesceOptions {
  /**
   * Request headers that name the inbound request without changing the answer (a correlation or trace id): calls
   * that differ only in these still share one request. The registry's `requestIdHeader` is always one of them.
   * Credentials (`authorization`, `proxy-authorization`, `cookie`, `x-api-key`, `api-key`, `x-auth-token`, the
   * service's API key or forwarded header) cannot be: calls with different credentials are never merged.
   * @default []
   */
  ignoreHeaders?: string[]
}

const ignorableHeader: Checker = Object.assign((value: unknown, key: string) => {
  headerName(value, key)
  if (kCredentialHeaders.has((value as string).toLowerCase())) {
    fail(key, 'a header that carries no credentials (calls with different credentials are never merged)', value)
  }
}, { expected: headerName.expected })

export const coalesceOptions = defineGroup({
  ignoreHeaders: { check: arrayOf(ignorableHeader, 'an array of header names'), default: [] }
} satisfies Spec<CoalesceOptions>)

/** Coalescing after resolution: the lower-case names of the headers left out of a call's identity. */
export interface ResolvedCoalesce {
  readonly ignoreHeaders: ReadonlySet<string>
}

/**
 * `undefined` when off; `requestIdHeader` is the registry's, always ignored. `auth` is the service's: a bearer
 * function may give each caller a token of its own, which one shared request cannot carry, and the header of an API
 * key or a forwarded credential cannot be ignored. `key` names the option in messages.
 */
export function resolveCoalesce (
  value: boolean | CoalesceOptions | undefined, requestIdHeader: string | false, auth: ResolvedAuth | undefined, key: string
): ResolvedCoalesce | undefined {
  if (value === undefined || value === false) return undefined
  if (auth?.bearer !== undefined) {
    throw invalid(key, 'cannot be combined with auth.bearer as a function: it may give each caller a token of its own, which one shared request cannot carry')
  }
  const names = (value === true ? undefined : value.ignoreHeaders) ?? coalesceOptions.defaults.ignoreHeaders
  const ignoreHeaders = new Set(names.map((n) => n.toLowerCase()))
  if (auth?.header !== undefined && ignoreHeaders.has(auth.header)) {
    throw invalid(`${key}.ignoreHeaders`, `cannot hold ${auth.header}: it carries the service's credentials (calls with different credentials are never merged)`)
  }
  if (requestIdHeader !== false) ignoreHeaders.add(requestIdHeader)
  return { ignoreHeaders }
}

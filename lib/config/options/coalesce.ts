import { arrayOf } from '../checkers'
import { headerName } from '../values'
import { defineGroup, type Spec } from './group'

/** Request coalescing: identical GETs in flight share one upstream request. */
export interface CoalesceOptions {
  /**
   * Request headers that name the inbound request without changing the answer (a correlation or trace id): calls
   * that differ only in these still share one request. The registry's `requestIdHeader` is always one of them.
   * @default []
   */
  ignoreHeaders?: string[]
}

export const coalesceOptions = defineGroup({
  ignoreHeaders: { check: arrayOf(headerName, 'an array of header names'), default: [] }
} satisfies Spec<CoalesceOptions>)

/** Coalescing after resolution: the lower-case names of the headers left out of a call's identity. */
export interface ResolvedCoalesce {
  readonly ignoreHeaders: ReadonlySet<string>
}

/** `undefined` when off; `requestIdHeader` is the registry's, always ignored. */
export function resolveCoalesce (value: boolean | CoalesceOptions | undefined, requestIdHeader: string | false): ResolvedCoalesce | undefined {
  if (value === undefined || value === false) return undefined
  const names = (value === true ? undefined : value.ignoreHeaders) ?? coalesceOptions.defaults.ignoreHeaders
  const ignoreHeaders = new Set(names.map((n) => n.toLowerCase()))
  if (requestIdHeader !== false) ignoreHeaders.add(requestIdHeader)
  return { ignoreHeaders }
}

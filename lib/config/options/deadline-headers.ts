import { headerNameOrFalse, lowerOrFalse } from '../values'
import { defineGroup, definedOnly, type Spec } from './group'

/** Outbound headers telling the upstream how much time is left and which attempt this is. */
export interface DeadlineHeadersOptions {
  /**
   * Header carrying the remaining milliseconds.
   * @default 'x-request-timeout-ms'
   */
  remaining?: string | false
  /**
   * Header carrying the attempt number (1-based).
   * @default 'x-attempt'
   */
  attempt?: string | false
}

export const deadlineHeadersOptions = defineGroup({
  remaining: { check: headerNameOrFalse, default: 'x-request-timeout-ms' },
  attempt: { check: headerNameOrFalse, default: 'x-attempt' }
} satisfies Spec<DeadlineHeadersOptions>)

/** Deadline headers after resolution: lower-case names, `false` for one left out. */
export type ResolvedDeadlineHeaders = Required<DeadlineHeadersOptions>

/** `undefined` when off: `false`, or both headers left out (a policy that is off is not in the chain). */
export function resolveDeadlineHeaders (value: boolean | DeadlineHeadersOptions | undefined): ResolvedDeadlineHeaders | undefined {
  if (value === undefined || value === false) return undefined
  const h: ResolvedDeadlineHeaders = { ...deadlineHeadersOptions.defaults, ...definedOnly(value === true ? {} : value) }
  const remaining = lowerOrFalse(h.remaining)
  const attempt = lowerOrFalse(h.attempt)
  return remaining === false && attempt === false ? undefined : { remaining, attempt }
}

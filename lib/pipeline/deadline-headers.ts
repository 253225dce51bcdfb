import { performance } from 'node:perf_hooks'
import type { CallContext } from './types'

/** Names of the outbound deadline headers, lower-case; `false` leaves one out. */
export interface DeadlineHeaderNames {
  remaining: string | false
  attempt: string | false
}

/**
 * Tells the upstream how long this attempt may take and which attempt it is (`deadlineHeaders` option), so it can
 * give up on work nobody will wait for and tell retries apart. `end` is the `performance.now()` time the attempt
 * must end by (the earlier of the call's deadline and its attempt timeout); with no end the remaining time is not
 * sent. Runs once per attempt, from the attempt timeout policy.
 */
export function setDeadlineHeaders (ctx: CallContext, names: DeadlineHeaderNames, end: number): void {
  if (names.remaining !== false && end !== Infinity) {
    ctx.setHeader(names.remaining, String(Math.max(0, Math.floor(end - performance.now()))))
  }
  if (names.attempt !== false) ctx.setHeader(names.attempt, String(ctx.attempt))
}

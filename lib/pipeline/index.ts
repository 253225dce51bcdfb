import type { HttpResponse } from '../response'
import type { CallContext, Next, Policy, PolicyFactory, ServiceRuntime } from './types'
import { breaker } from './breaker'
import { bulkhead } from './bulkhead'
import { attemptTimeout } from './attempt-timeout'
import { deadline } from './deadline'
import { fallback } from './fallback'
import { rateLimit, rateLimitFeedback } from './rate-limit'
import { redirect } from './redirect'
import { hedge } from './hedge'
import { retry } from './retry'

/**
 * The policies in pipeline order, outermost first (DESIGN.md, "The pipeline", except that the total timeout and
 * deadline now sit outside the rate limiter and the bulkhead, as issue 16 asks: a limit holds wherever a call waits). A slot without a factory is a
 * policy a later module fills in; a factory returning `undefined` leaves its policy out of the chain.
 */
export const policyOrder: ReadonlyArray<[name: string, factory: PolicyFactory | undefined]> = [
  ['fallback', fallback],
  ['cache', undefined],
  // Outside the rate limiter and the bulkhead: a call's total timeout and deadline hold while it waits in them too.
  ['deadline', deadline],
  ['rateLimit', rateLimit],
  ['bulkhead', bulkhead],
  ['retry', retry],
  ['hedge', hedge],
  ['rateLimitFeedback', rateLimitFeedback],
  ['breaker', breaker],
  ['auth', undefined],
  ['attemptTimeout', attemptTimeout],
  ['telemetry', undefined],
  ['redirect', redirect]
]

/** Composes `policies` (outermost first) around `transport` into one function. */
export function compose (policies: Policy[], transport: Next): Next {
  let next = transport
  for (let i = policies.length - 1; i >= 0; i--) {
    const policy = policies[i]
    const inner = next
    next = (ctx: CallContext): Promise<HttpResponse> => policy(ctx, inner)
  }
  return next
}

/** Builds the chain of a service once, at start-up. Returns the chain and the names of the policies in it. */
export function buildChain (service: ServiceRuntime, transport: Next, perCall: boolean): { handler: Next, names: string[] } {
  const policies: Policy[] = []
  const names: string[] = []
  for (const [name, factory] of policyOrder) {
    const policy = factory?.(service, perCall)
    if (policy !== undefined) {
      policies.push(policy)
      names.push(name)
    }
  }
  return { handler: compose(policies, transport), names }
}

export type { CallContext, Next, Policy, PolicyFactory, ServiceRuntime } from './types'

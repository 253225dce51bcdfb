import { compose, type Chain } from './chain'
import type { CallOptionName, Layer, Policy, PolicyFactory, PolicySteps, ServiceRuntime } from './types'
import { breaker } from './breaker'
import { bulkhead } from './bulkhead'
import { coalesce } from './coalesce'
import { cache } from './cache'
import { attemptTimeout } from './attempt-timeout'
import { auth } from './auth'
import { deadline } from './deadline'
import { fallback } from './fallback'
import { rateLimit, rateLimitFeedback } from './rate-limit'
import { redirect } from './redirect'
import { hedge } from './hedge'
import { retry } from './retry'

/**
 * The policies in pipeline order, outermost first (DESIGN.md, "The pipeline", except that the total timeout and
 * deadline sit outside the rate limiter and the bulkhead, as issue 16 asks: a limit holds wherever a call waits). A
 * slot without a factory is a policy a later module fills in; a factory returning `undefined` leaves its policy out of
 * the chain. What each slot sees and owes:
 *
 * - `fallback`: the call's final outcome, every limit below included; what it serves reaches nothing below (it is
 *   never cached).
 * - `cache`: outermost of the policies that may reach the upstream: a hit answers before any limit, retry or breaker
 *   spends anything; a miss or a revalidation goes down as one call. Inside `fallback`, so a fallback's answer is never
 *   stored, and a stale entry (stale-if-error) may answer before the fallback does.
 * - `deadline`: the total timeout and the inbound request's deadline, over everything below, waits included.
 * - `coalesce`: identical GETs in flight go below once, as one call: above the limits (merged calls take one permit,
 *   one slot) and inside `deadline` (each caller waits under its own limits, and leaves alone).
 * - `rateLimit`, `bulkhead`: admission, once per call (retries and hedges are attempts of an admitted call).
 * - `retry`, `hedge`: make attempts; every layer below runs once per attempt.
 * - `rateLimitFeedback`: per attempt, adapts the rate to the upstream's 429s and rate-limit headers.
 * - `breaker`: per attempt, may refuse it (and picks the upstream when it keeps one breaker per upstream).
 * - `auth`: per attempt, inside the breaker (an attempt the breaker refuses fetches no token) and outside the attempt
 *   timeout (fetching a token does not eat the attempt's time; the total timeout and deadline still hold). It may
 *   call another service of the registry at call time (`ServiceRuntime.client`: OAuth2's `tokenService`), and resends
 *   once on a 401 within the same attempt.
 * - `attemptTimeout`: one attempt, every redirect hop and the body included, within `timeout.attempt`; sends the
 *   deadline headers.
 * - `redirect`: follows redirects within one attempt; each hop is a request of its own below it.
 * - `telemetry`: one span per request on the wire, so below `redirect`: each hop gets its own.
 *
 * Each factory declares the call options it reads (`PolicyFactory.callOptions`): `perCallRouting` turns them into
 * the client's check.
 */
export const policyOrder: ReadonlyArray<[name: string, factory: PolicyFactory | undefined]> = [
  ['fallback', fallback],
  ['cache', cache],
  ['deadline', deadline],
  ['coalesce', coalesce],
  ['rateLimit', rateLimit],
  ['bulkhead', bulkhead],
  ['retry', retry],
  ['hedge', hedge],
  ['rateLimitFeedback', rateLimitFeedback],
  ['breaker', breaker],
  ['auth', auth],
  ['attemptTimeout', attemptTimeout],
  ['redirect', redirect],
  ['telemetry', undefined]
]

/**
 * When a call of a service goes through its per-call chain instead of its own. Computed once per service, from the
 * names of the policies in its own chain; the client tests it on every call that passes options or a deadline.
 */
export interface PerCallRouting {
  /**
   * The call options declared by a policy (`PolicyFactory.callOptions`) that the service's own chain lacks: a call
   * passing one may switch that policy on. Options of a policy in the chain need nothing: it reads them on every call.
   */
  readonly options: readonly CallOptionName[]
  /** `true` when the service's chain has no `deadline` policy: a call with an inbound deadline needs the per-call one. */
  readonly deadline: boolean
}

/** The per-call routing of a service whose own chain holds the policies `names`. */
export function perCallRouting (names: readonly string[]): PerCallRouting {
  const options = new Set<CallOptionName>()
  for (const [name, factory] of policyOrder) {
    if (factory?.callOptions === undefined || names.includes(name)) continue
    for (const option of factory.callOptions) options.add(option)
  }
  return { options: [...options], deadline: !names.includes('deadline') }
}

/** Builds a chain of a service once, at start-up. Returns the chain and the names of the policies in it. */
export function buildChain (service: ServiceRuntime, transport: Layer, perCall: boolean): { chain: Chain, names: string[] } {
  const policies: Array<Policy | PolicySteps> = []
  const names: string[] = []
  for (const [name, factory] of policyOrder) {
    const policy = factory?.(service, perCall)
    if (policy !== undefined) {
      policies.push(policy)
      names.push(name)
    }
  }
  return { chain: compose(policies, transport), names }
}

export type { Chain } from './chain'
export type { CallContext, CallOptionName, Layer, Next, Outcome, Policy, PolicyFactory, PolicySteps, ServiceClient, ServiceRuntime } from './types'

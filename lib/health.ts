import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import type { UnderPressureOptions } from './config/types'
import { invalid } from './config/validate'
import { breakerOf } from './pipeline/breaker'
import type { HttpServices } from './services'

type StatusRoute = Exclude<NonNullable<UnderPressureOptions['exposeStatusRoute']>, boolean | string>

// Without it the status route's response schema would strip the stats (fast-json-stringify drops unknown keys).
const kStatsSchema = { httpServices: { type: 'object', additionalProperties: true } }

/**
 * Names of the `critical: true` services whose breaker is open: that cannot be reached. With several `baseUrl`s (one
 * breaker per upstream) that is when every upstream's breaker is open; one healthy upstream keeps the service up. A
 * half-open breaker does not count: once the app reports healthy again it gets the traffic whose first call is the
 * probe. Counting it would keep an app that a load balancer took out of rotation unhealthy for ever, as no call would
 * ever probe.
 */
export function openCriticalServices (registry: HttpServices): string[] {
  const out: string[] = []
  for (const name of registry.names()) {
    const service = registry.get(name)
    if (service.options.critical && breakerOf(service)?.state === 'open') out.push(name)
  }
  return out
}

function statusRoute (option: UnderPressureOptions['exposeStatusRoute']): StatusRoute | false {
  if (option === false) return false
  if (option === undefined || option === true) return { url: '/status', routeOpts: {}, routeResponseSchemaOpts: kStatsSchema }
  if (typeof option === 'string') return { url: option, routeOpts: {}, routeResponseSchemaOpts: kStatsSchema }
  return { ...option, routeResponseSchemaOpts: { ...kStatsSchema, ...option.routeResponseSchemaOpts } }
}

/**
 * The options @fastify/under-pressure is registered with: the user's, plus a `healthCheck` that fails while a
 * critical service's breaker is open (then the user's own `healthCheck`, if any) and whose result puts
 * `httpServices.stats()` into the status route's body.
 *
 * under-pressure runs the health check on each status request, and also every `healthCheckInterval` ms when that
 * is set: then a failing check also sheds every inbound request with 503 (its load-shedding mode). Without it,
 * only the status route reports the failure.
 */
export function underPressureOptions (registry: HttpServices, options: UnderPressureOptions): UnderPressureOptions {
  const own = options.healthCheck
  const route = statusRoute(options.exposeStatusRoute)
  const out: UnderPressureOptions = { ...options, exposeStatusRoute: route }
  // under-pressure refuses a health check that neither a route nor an interval would ever run.
  if (route === false && options.healthCheckInterval === undefined) {
    delete out.healthCheck
    return out
  }
  out.healthCheck = async (fastify) => {
    if (openCriticalServices(registry).length > 0) return false
    let extra: Record<string, unknown> | undefined
    if (own !== undefined) {
      const result = await own(fastify)
      if (result === false) return false
      if (typeof result === 'object' && result !== null) extra = result
    }
    return { ...extra, httpServices: registry.stats() }
  }
  return out
}

/** Registers @fastify/under-pressure on `fastify` for the `underPressure` plugin option. */
export async function registerUnderPressure (fastify: FastifyInstance, registry: HttpServices, options: UnderPressureOptions): Promise<void> {
  if (fastify.hasDecorator('isUnderPressure')) {
    throw invalid('underPressure', '@fastify/under-pressure is already registered: pass its options here instead, or leave this option off')
  }
  await fastify.register(underPressure, underPressureOptions(registry, options))
}

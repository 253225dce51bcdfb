import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { UnderPressureOptions } from './config/types'
import { invalid } from './config/validate'
import { breakerOf } from './pipeline/breaker'
import type { Logger } from './pipeline/types'
import type { HttpServices } from './services'

type StatusRouteOption = Exclude<NonNullable<UnderPressureOptions['exposeStatusRoute']>, boolean | string>
type HealthCheck = NonNullable<UnderPressureOptions['healthCheck']>

/** One reason the app is unhealthy, as the status route's 503 body lists it under `unhealthy`. */
export interface Unhealthy {
  /** A `critical: true` service no call can reach. */
  service?: string
  /** Its breaker: `open` (with several `baseUrl`s: every upstream's). */
  breaker?: 'open'
  /** Milliseconds until its breaker half-opens (then the app reports healthy, so traffic brings the probe). */
  retryAfterMs?: number
  /** `healthCheck`: the `underPressure.healthCheck` option answered `false` or threw. */
  check?: 'healthCheck'
  /** under-pressure's own limit that is exceeded (`eventLoopDelay`, `heapUsedBytes`, `rssBytes`, `eventLoopUtilization`). */
  pressure?: string
}

/**
 * The `critical: true` services whose breaker is open: that cannot be reached. With several `baseUrl`s (one breaker per
 * upstream) that is when every upstream's breaker is open; one healthy upstream keeps the service up. A half-open
 * breaker does not count: once the app reports healthy again it gets the traffic whose first call is the probe.
 * Counting it would keep an app that a load balancer took out of rotation unhealthy for ever, as no call would ever
 * probe.
 */
export function openCriticalServices (registry: HttpServices): Unhealthy[] {
  const out: Unhealthy[] = []
  for (const name of registry.names()) {
    const service = registry.get(name)
    if (!service.options.critical) continue
    const breaker = breakerOf(service)
    if (breaker?.state === 'open') out.push({ service: name, breaker: 'open', retryAfterMs: Math.ceil(breaker.retryAfterMs) })
  }
  return out
}

/** The `message` of the 503 body (and of the warn line): what fails, in a sentence. */
function describeUnhealthy (list: Unhealthy[]): string {
  return 'unhealthy: ' + list.map((u) => u.service !== undefined
    ? `critical service ${u.service} unreachable (circuit breaker open, half-open in ${u.retryAfterMs ?? 0} ms)`
    : u.check !== undefined ? 'the healthCheck option reported unhealthy' : `under pressure (${u.pressure ?? 'unknown'})`).join('; ')
}

/**
 * The health of the app as the status route and under-pressure's `healthCheckInterval` see it: the critical services'
 * breakers, then the user's own `healthCheck`. A change of state is logged once, at warn when the app turns unhealthy
 * (or the list of what fails changes) and at info when it is healthy again; probes that find nothing new log nothing.
 */
class Health {
  private readonly registry: HttpServices
  private readonly own: HealthCheck | undefined
  private readonly log: Logger
  /** What failed at the last check, as a key (`''`: healthy). */
  private last = ''

  constructor (registry: HttpServices, own: HealthCheck | undefined, log: Logger) {
    this.registry = registry
    this.own = own
    this.log = log
  }

  async check (fastify: FastifyInstance): Promise<{ unhealthy: Unhealthy[], extra: Record<string, unknown> | undefined }> {
    const unhealthy = openCriticalServices(this.registry)
    let extra: Record<string, unknown> | undefined
    let thrown: unknown
    if (this.own !== undefined) {
      try {
        const result = await this.own(fastify)
        if (result === false) unhealthy.push({ check: 'healthCheck' })
        else if (typeof result === 'object' && result !== null) extra = result
      } catch (err) {
        thrown = err
        unhealthy.push({ check: 'healthCheck' })
      }
    }
    this.note(unhealthy, thrown)
    return { unhealthy, extra }
  }

  private note (unhealthy: Unhealthy[], err: unknown): void {
    const key = unhealthy.map((u) => u.service ?? u.check).join(',')
    if (key === this.last) return
    this.last = key
    if (key === '') {
      this.log.info({ health: 'healthy' }, 'health check passes again')
    } else {
      this.log.warn({ health: 'unhealthy', unhealthy, err }, `health check fails: ${describeUnhealthy(unhealthy)}`)
    }
  }
}

const kAnyObject = { type: 'object', additionalProperties: true }
const kUnhealthyBody = {
  type: 'object',
  properties: {
    statusCode: { type: 'number' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' },
    status: { type: 'string' },
    unhealthy: { type: 'array', items: kAnyObject },
    httpServices: kAnyObject
  }
}

function statusRouteOf (option: UnderPressureOptions['exposeStatusRoute']): StatusRouteOption | false {
  if (option === false) return false
  if (option === undefined || option === true) return { url: '/status', routeOpts: {} }
  if (typeof option === 'string') return { url: option, routeOpts: {} }
  return option
}

/** The body and status of an unhealthy answer (no error thrown: Fastify would log each probe at error, with a stack). */
function unhealthyBody (reply: FastifyReply, unhealthy: Unhealthy[], retryAfter: number | undefined): Record<string, unknown> {
  let wait = retryAfter
  if (wait === undefined) {
    let ms = Infinity
    for (const u of unhealthy) if (u.retryAfterMs !== undefined) ms = Math.min(ms, u.retryAfterMs)
    wait = ms === Infinity ? 10 : Math.max(1, Math.ceil(ms / 1000))
  }
  void reply.code(503).header('retry-after', String(wait))
  return { statusCode: 503, code: 'FST_UNDER_PRESSURE', error: 'Service Unavailable', message: describeUnhealthy(unhealthy), status: 'unhealthy', unhealthy }
}

/**
 * The status route, registered by this plugin in place of under-pressure's own (whose unhealthy answer is only
 * `{"code":"FST_UNDER_PRESSURE"}`, logged at error three times per probe): 200 `{ status: 'ok', …, httpServices }`,
 * or 503 with what fails under `unhealthy` (each critical service whose breaker is open, its state and when it
 * half-opens; the user's own check; an under-pressure limit) and the same `httpServices`. It takes under-pressure's
 * route options (`url`, `routeOpts`, `routeSchemaOpts`, `routeResponseSchemaOpts`).
 */
function statusRoute (registry: HttpServices, health: Health, route: StatusRouteOption, retryAfter: number | undefined, fastify: FastifyInstance): RouteOptions {
  const { response: customResponse = {}, ...schemaOpts } = (route.routeSchemaOpts ?? {}) as { response?: Record<string, { properties?: object }> }
  const { 200: custom200 = {}, ...customErrors } = customResponse
  const routeOpts = (route.routeOpts ?? {}) as Partial<RouteOptions>
  return {
    ...routeOpts,
    url: route.url ?? '/status',
    method: 'GET',
    // under-pressure's load shedding (`healthCheckInterval`, memory or event-loop limits) would answer this route too,
    // with its bare body: a failed health check lets the handler answer with the details; other limits are named.
    config: {
      pressureHandler: (_request: FastifyRequest, reply: FastifyReply, type: string) =>
        type === 'healthCheck' ? undefined : unhealthyBody(reply, [{ pressure: type }], retryAfter),
      ...(routeOpts.config as object | undefined)
    } as RouteOptions['config'],
    schema: {
      ...schemaOpts,
      response: {
        200: {
          type: 'object',
          ...custom200,
          properties: { status: { type: 'string' }, httpServices: kAnyObject, ...route.routeResponseSchemaOpts, ...custom200.properties }
        },
        503: kUnhealthyBody,
        ...customErrors
      }
    },
    handler: async function httpServicesStatus (_request, reply) {
      const { unhealthy, extra } = await health.check(fastify)
      const httpServices = registry.stats()
      if (unhealthy.length === 0) return { status: 'ok', ...extra, httpServices }
      return { ...unhealthyBody(reply, unhealthy, retryAfter), httpServices }
    }
  }
}

/**
 * Registers @fastify/under-pressure on `fastify` for the `underPressure` plugin option, and the status route.
 *
 * The health check fails while a critical service's breaker is open, or the user's own `healthCheck` fails. The
 * status route runs it on each request; with `healthCheckInterval`, under-pressure also runs it every that many ms,
 * and a failing check then sheds every inbound request with 503 (its load-shedding mode) but the status route.
 */
export async function registerUnderPressure (fastify: FastifyInstance, registry: HttpServices, options: UnderPressureOptions): Promise<void> {
  if (fastify.hasDecorator('isUnderPressure')) {
    throw invalid('underPressure', '@fastify/under-pressure is already registered: pass its options here instead, or leave this option off')
  }
  const health = new Health(registry, options.healthCheck, fastify.log as unknown as Logger)
  const route = statusRouteOf(options.exposeStatusRoute)
  const forwarded: UnderPressureOptions = { ...options, exposeStatusRoute: false }
  // under-pressure refuses a health check that no interval would run (the route is ours).
  if (options.healthCheckInterval === undefined) {
    delete forwarded.healthCheck
  } else {
    forwarded.healthCheck = async (f) => (await health.check(f)).unhealthy.length === 0
  }
  await fastify.register(underPressure, forwarded)
  if (route !== false) fastify.route(statusRoute(registry, health, route, options.retryAfter, fastify))
}

/**
 * The registry's own options (the object given to the plugin or to `createHttpServices`) and the whole resolved set.
 * A module with a registry-level option (webhooks) adds its key and row here (see group.ts).
 */
import type { FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { Dispatcher } from 'undici'
import { booleanOr, invalid, isPlainObject, isString, ok, record, rule } from '../checkers'
import { headerNameOrFalse, lowerOrFalse, ms, string } from '../values'
import { commonServiceOptions, type CommonServiceOptions } from './common'
import { defineGroup, type Spec } from './group'
import { redisOption, resolveRedis, type RedisClient, type RedisOptions, type ResolvedRedis } from './redis'
import { resolveService, serviceOptions, type ResolvedService, type ServiceOptions } from './service'
import { telemetryOptions, type ResolvedTelemetry, type TelemetryOptions } from './telemetry'
import { resolveStatusPage, statusPageOptions, type ResolvedStatusPage, type StatusPageOptions } from './status-page'

/** The service-independent part of the options. */
export interface HttpServicesOptions {
  /**
   * The services by name.
   * @default {}
   */
  services?: Record<string, ServiceOptions>
  /**
   * Options applied to every service unless the service sets them.
   * @default {}
   */
  defaults?: CommonServiceOptions
  /** A YAML or JSON file with the same shape; `${NAME}` and `${NAME:-default}` are read from the environment. */
  configFile?: string
  /**
   * How long `close()` waits for calls in flight before aborting them, in milliseconds.
   * @default 10000
   */
  closeTimeout?: number
  /**
   * Header carrying `request.id` to downstream calls (Fastify takes the id from an inbound header only when its own
   * `requestIdHeader` option trusts one).
   * `false` turns it off.
   * @default 'x-request-id'
   */
  requestIdHeader?: string | false
  /**
   * Time budget of an inbound request in milliseconds: calls made while handling it never outlive it. `0` = none.
   * @default 0
   */
  requestDeadline?: number
  /**
   * Inbound header whose value (milliseconds) sets the request's budget, capped by `requestDeadline` when both are set.
   * `false` ignores inbound headers.
   * @default false
   */
  deadlineHeader?: string | false
  /**
   * A dispatcher used for every service instead of their own pools (e.g. undici `MockAgent`). It is not closed by
   * this library. The mock kit (`fastify-http-services/testing`) sets it for you.
   */
  dispatcher?: Dispatcher
  /**
   * Registers @fastify/under-pressure (plugin only): a health check that fails while a `critical` service's breaker
   * is open, and a status route (`/status` unless `exposeStatusRoute` says otherwise) whose body carries
   * `httpServices` stats. `true` uses under-pressure's defaults; an object is passed to it (a `healthCheck` of your
   * own runs after ours). Off by default.
   * @default false
   */
  underPressure?: boolean | UnderPressureOptions
  /**
   * OpenTelemetry: a CLIENT span per request on the wire, the HTTP client metrics and the trace context in outbound
   * headers (README, "Telemetry"), whenever `@opentelemetry/api` is installed and an SDK is registered by the time the
   * services open. `false` turns it off; an object names the providers to use instead of the global ones.
   * @default true
   */
  telemetry?: boolean | TelemetryOptions
  /**
   * The Redis connection for shared state (`cache: { store: 'redis' }`): a `redis://` URL (the library connects and
   * closes it on close), an ioredis client of yours (`fastify.redis`; never closed here), or `RedisOptions` with a key
   * prefix and a command timeout. Needs the ioredis package. Off by default.
   */
  redis?: string | RedisOptions | RedisClient
  /**
   * The live services page (plugin only; README "Status page"): `{path}` (HTML), `{path}.json` and `{path}/events`
   * (server-sent events) with each service's breakers, rates, latencies and limits. `true` serves it at
   * `/_services`; an object sets `path` and `routeOpts` (guard it with an `onRequest` hook there). Off by default.
   * @default false
   */
  statusPage?: boolean | StatusPageOptions
}

/** Options of @fastify/under-pressure, as the `underPressure` plugin option takes them. */
export type UnderPressureOptions = FastifyUnderPressureOptions

/** Fastify's own register options: they reach the plugin in the same object, and are Fastify's business, not ours. */
interface FastifyRegisterOptions {
  prefix?: unknown
  logLevel?: unknown
  logSerializers?: unknown
}

const serviceName = rule('a service name (a letter, then letters, digits, "_", "." or "-")',
  (v) => isString(v) && /^[A-Za-z][\w.-]*$/.test(v))

const dispatcher = rule('an undici Dispatcher (an object with a dispatch function)',
  (v) => typeof v === 'object' && v !== null && typeof (v as { dispatch?: unknown }).dispatch === 'function')

export const httpServicesOptions = defineGroup({
  services: { check: record(serviceName, serviceOptions.check), default: {} },
  defaults: { check: commonServiceOptions.check, default: {} },
  configFile: { check: string, default: undefined },
  closeTimeout: { check: ms, default: 10000 },
  requestIdHeader: { check: headerNameOrFalse, default: 'x-request-id' },
  requestDeadline: { check: ms, default: 0 },
  deadlineHeader: { check: headerNameOrFalse, default: false },
  dispatcher: { check: dispatcher, default: undefined },
  underPressure: { check: booleanOr(rule('an object of @fastify/under-pressure options', isPlainObject)), default: false },
  telemetry: { check: booleanOr(telemetryOptions.check), default: true },
  redis: { check: redisOption, default: undefined },
  statusPage: { check: booleanOr(statusPageOptions.check), default: false },
  prefix: { check: ok('anything'), default: undefined },
  logLevel: { check: ok('anything'), default: undefined },
  logSerializers: { check: ok('anything'), default: undefined }
} satisfies Spec<HttpServicesOptions & FastifyRegisterOptions>)

/** The whole option set after resolution. */
export interface ResolvedOptions {
  services: Map<string, ResolvedService>
  closeTimeout: number
  requestIdHeader: string | false
  requestDeadline: number
  deadlineHeader: string | false
  dispatcher: Dispatcher | undefined
  /** Options for @fastify/under-pressure; `undefined` when it is not registered. */
  underPressure: UnderPressureOptions | undefined
  /** The explicit providers (`{}`: the global ones); `undefined` when `telemetry: false`. */
  telemetry: ResolvedTelemetry
  /** The Redis connection's options; `undefined` when there is none. */
  redis: ResolvedRedis | undefined
  /** The status page's path and route options; `undefined` when it is off. */
  statusPage: ResolvedStatusPage | undefined
}

/** Validated options (the config file already merged in), resolved: `defaults` under each service, defaults filled. */
export function resolveRegistry (options: HttpServicesOptions): ResolvedOptions {
  const d = httpServicesOptions.defaults
  const files = new Map<string, Buffer>()
  const services = new Map<string, ResolvedService>()
  const defaults: CommonServiceOptions = options.defaults ?? d.defaults
  checkDefaultForwardHeaders(defaults.forwardHeaders)
  const requestIdHeader = lowerOrFalse(options.requestIdHeader ?? d.requestIdHeader)
  for (const [name, service] of Object.entries<ServiceOptions>(options.services ?? d.services)) {
    services.set(name, resolveService(name, defaults, service, files, requestIdHeader))
  }
  checkTokenServices(services)
  const underPressure = options.underPressure ?? d.underPressure
  const telemetry = options.telemetry ?? d.telemetry
  const redis = resolveRedis(options.redis)
  if (redis === undefined) {
    for (const [name, service] of services) {
      if (service.cache?.store === 'redis') throw invalid(`services.${name}.cache.store`, "'redis' needs the redis option (a Redis connection)")
      if (service.rateLimit?.shared !== undefined) throw invalid(`services.${name}.rateLimit.shared`, 'needs the redis option (a Redis connection)')
      if (service.breaker?.shared === true) throw invalid(`services.${name}.breaker.shared`, 'needs the redis option (a Redis connection)')
    }
  }
  return {
    services,
    closeTimeout: options.closeTimeout ?? d.closeTimeout,
    requestIdHeader,
    requestDeadline: options.requestDeadline ?? d.requestDeadline,
    deadlineHeader: lowerOrFalse(options.deadlineHeader ?? d.deadlineHeader),
    dispatcher: options.dispatcher,
    underPressure: underPressure === true ? {} : underPressure === false ? undefined : underPressure,
    telemetry: telemetry === true ? {} : telemetry === false ? undefined : telemetry,
    redis,
    statusPage: resolveStatusPage(options.statusPage ?? d.statusPage)
  }
}

/**
 * Every `auth.oauth2.tokenService` names a configured service, and no chain of them comes back to where it started
 * (a <-> b: each token request would wait for the other's token). Checked here, once every service is known: the
 * token service may be declared after the service using it.
 */
function checkTokenServices (services: Map<string, ResolvedService>): void {
  for (const [name, service] of services) {
    const first = service.auth?.oauth2?.tokenService
    if (first === undefined) continue
    const key = `services.${name}.auth.oauth2.tokenService`
    if (!services.has(first)) {
      throw invalid(key, `names ${JSON.stringify(first)}, which is not a configured service (known: ${[...services.keys()].join(', ')})`)
    }
    const chain = [name]
    for (let next: string | undefined = first; next !== undefined; next = services.get(next)?.auth?.oauth2?.tokenService) {
      if (chain.includes(next)) {
        throw invalid(key, `leads back to a service already on the way (${[...chain, next].join(' -> ')}): each token request would wait for the other's token`)
      }
      chain.push(next)
    }
  }
}

/** Credentials a caller sends: forwarded only to the services that ask for them, never by `defaults`. */
const kCredentialHeaders = new Set(['authorization', 'proxy-authorization', 'cookie'])

/**
 * `defaults.forwardHeaders` holds no credential: it would send the caller's to every service, where the issue's
 * promise is that only a service that sets `auth.forward` (or lists it in its own `forwardHeaders`) gets it.
 */
function checkDefaultForwardHeaders (names: string[] | undefined): void {
  names?.forEach((name, i) => {
    if (kCredentialHeaders.has(name.toLowerCase())) {
      throw invalid(`defaults.forwardHeaders[${i}]`, `${JSON.stringify(name)} is a credential: forward it per service (auth: { forward: true } or the service's own forwardHeaders), not to every service`)
    }
  })
}

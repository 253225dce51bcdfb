import type { ClientScope } from './call'
import { HttpClient } from './client'
import { resolveOptions } from './config/resolve'
import type { ResolvedOptions } from './config/resolved'
import type { HttpServicesOptions } from './config/types'
import { releaseLogSubscriber, retainLogSubscriber } from './diagnostics/log-subscriber'
import { UnknownServiceError } from './errors'
import { retainTelemetry } from './telemetry'
import type { Logger } from './pipeline/types'
import { RedisConnection } from './redis/connection'
import { SharedBreakers } from './redis/shared-breakers'
import { redisStatsOf } from './redis/stats'
import { CacheAside } from './cache/cache-aside'
import { HttpService, type ServiceStats } from './service'
import { WebhookSender } from './webhooks/sender'

/**
 * Service names, for type-checked `httpClient(name)` calls. Empty by default (any string is accepted); augment it
 * to make a typo a compile error:
 *
 * ```ts
 * declare module 'fastify-http-services' {
 *   interface HttpServiceNames { billing: true, users: true }
 * }
 * ```
 */
export interface HttpServiceNames {} // eslint-disable-line @typescript-eslint/no-empty-interface

/** A service name: the keys of `HttpServiceNames` when it is augmented, else any string. */
export type ServiceName = keyof HttpServiceNames extends never ? string : Extract<keyof HttpServiceNames, string>

const noop = (): void => {}
/** A logger that drops everything: the default outside Fastify. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => silentLogger }

/**
 * @internal A dispatcher with a method under this key is told, at registration, which registry it serves: the mock
 * kit's (`fastify-http-services/testing`) uses it to intercept calls by service name.
 */
export const kServeRegistry = Symbol.for('fastify-http-services.serve-registry')

/**
 * @internal The scope of calls made outside an inbound request: they log with `log`, and carry no signal, deadline or
 * forwarded headers. The mock kit's clients use it too.
 */
export function unboundScope (log: Logger): ClientScope {
  return { log, signal: () => undefined, deadline: Infinity, headersFor: (base) => base }
}

/** Options of `createHttpServices`: the plugin's options plus a logger. */
export interface CreateHttpServicesOptions extends HttpServicesOptions {
  /** A pino-compatible logger. Defaults to a silent one. */
  logger?: Logger
}

/** The registry of services: `fastify.httpServices`, or what `createHttpServices()` returns. */
export class HttpServices {
  /** @internal */
  readonly resolved: ResolvedOptions
  private readonly services = new Map<string, HttpService>()
  private readonly clients = new Map<string, HttpClient>()
  private readonly log: Logger
  private readonly known: string
  /** @internal The Redis connection of the `redis` option; `undefined` without one. */
  readonly redis: RedisConnection | undefined
  /**
   * Cache-aside for values the app fetches or computes itself: `getOrFetch(key, fetcher, { ttl, forceRefresh, tags })`,
   * `get`, `set`, `invalidate`, `invalidatePattern`, `invalidateTag`. In Redis when the `redis` option is set (shared
   * by every instance), in this process otherwise.
   */
  readonly cache: CacheAside
  private closeCalled = false
  /** Breaker openings shared through Redis (`breaker.shared`); `undefined` when no service shares its breaker. */
  private readonly sharedBreakers: SharedBreakers | undefined
  /** Holds the log lines' subscription (`./diagnostics/log-subscriber`) from `open()` to `close()`. */
  private logging = false
  private sender: WebhookSender | undefined = undefined
  /** Leaves telemetry (`./telemetry`) when the registry closes; `undefined` while it takes no part. */
  private releaseTelemetry: (() => void) | undefined = undefined

  constructor (options: HttpServicesOptions, log: Logger = silentLogger) {
    this.resolved = resolveOptions(options)
    this.log = log
    // Known before the services are built: a policy factory may check the name of a service it will call.
    this.known = [...this.resolved.services.keys()].join(', ')
    // Made here, not in open(): a missing ioredis fails the registration with the option's name.
    this.redis = this.resolved.redis === undefined ? undefined : new RedisConnection(this.resolved.redis, log)
    this.cache = new CacheAside(this.redis)
    for (const [name, service] of this.resolved.services) {
      const created = new HttpService(service, log, this.resolved.dispatcher, (other) => this.clientFor(name, other), this.redis)
      created.registry = this
      this.services.set(name, created)
    }
    const redis = this.redis
    const sharing = [...this.services.values()].filter((s) => s.options.breaker?.shared === true)
    this.sharedBreakers = redis === undefined || sharing.length === 0 ? undefined : new SharedBreakers(redis, sharing, this)
    for (const service of redis === undefined ? [] : this.services.values()) {
      const stats = redisStatsOf(service.options, redis as RedisConnection, this.sharedBreakers)
      if (stats !== undefined) service.addStats('redis', stats)
    }
    // Made now only when a service is a webhook endpoint (its stats then show `webhooks`); else on first use.
    if ([...this.resolved.services.values()].some((s) => s.webhook !== undefined)) this.sender = this.makeSender()
    const serve = (this.resolved.dispatcher as { [kServeRegistry]?: unknown } | undefined)?.[kServeRegistry]
    if (typeof serve === 'function') serve.call(this.resolved.dispatcher, this)
  }

  /** The service named `name`; throws `UnknownServiceError` listing the known names. */
  get (name: ServiceName): HttpService {
    const service = this.services.get(name)
    if (service === undefined) throw this.unknown(name)
    return service
  }

  /** Whether a service named `name` is registered. */
  has (name: string): boolean {
    return this.services.has(name)
  }

  /** The registered service names. */
  names (): string[] {
    return [...this.resolved.services.keys()]
  }

  /** A client for use outside an inbound request (workers, start-up code, `onReady` hooks). */
  client (name: ServiceName): HttpClient {
    let client = this.clients.get(name)
    if (client === undefined) {
      client = new HttpClient(this.get(name), unboundScope(this.log))
      this.clients.set(name, client)
    }
    return client
  }

  /**
   * Webhooks to services configured with `webhook`: `send`, `sendAndWait`, `deadLetters`, `replay`, `enable`
   * (README "Webhooks"). With `redis`, deliveries are BullMQ jobs there (durable); in memory otherwise (events still
   * queued are lost when the process ends).
   */
  get webhooks (): WebhookSender {
    if (this.sender === undefined) {
      this.sender = this.makeSender()
      if (this.closeCalled) void this.sender.close()
    }
    return this.sender
  }

  private makeSender (): WebhookSender {
    const services = [...this.services.values()]
    // Durable (BullMQ jobs in Redis) when the registry has redis and a service is a webhook endpoint.
    const durable = this.redis !== undefined && services.some((s) => s.options.webhook !== undefined)
      ? { redis: this.redis, url: this.resolved.redis?.url, closeTimeout: this.resolved.closeTimeout }
      : undefined
    return new WebhookSender({ get: (name) => this.get(name as ServiceName), client: (name) => this.client(name as ServiceName) }, services, undefined, durable)
  }

  /** @internal A client bound to an inbound request's scope. */
  bind (name: string, scope: ClientScope): HttpClient {
    return new HttpClient(this.get(name), scope)
  }

  /** Per-service counters, pool state and policy state. */
  stats (): Record<string, ServiceStats> {
    const out: Record<string, ServiceStats> = {}
    for (const [name, service] of this.services) out[name] = service.stats()
    return out
  }

  /**
   * Resets every service (`HttpService.reset()`): counters and stats back to zero, breakers closed with their windows
   * emptied, retry budgets and rate limiters refilled, bulkhead and fallback counters zeroed. Calls in flight go on.
   * For tests that share one app between tests (`mocks.reset()` of the testing kit calls it).
   */
  reset (): void {
    for (const service of this.services.values()) service.reset()
  }

  /** Opens every service's dispatcher. Idempotent. */
  async open (): Promise<void> {
    if (!this.logging && !this.closeCalled) {
      this.logging = true
      retainLogSubscriber()
      const telemetry = this.resolved.telemetry
      if (telemetry !== undefined) {
        this.releaseTelemetry = retainTelemetry({
          registry: this,
          stats: () => this.stats(),
          // undici speaks HTTP/1.1 unless a service allows HTTP/2, which ALPN may or may not pick.
          protocols: new Map([...this.resolved.services].map(([name, s]) => [name, s.allowH2 ? undefined : '1.1']))
        }, telemetry)
      }
    }
    if (!this.closeCalled) {
      await this.redis?.open()
      // Again after the wait (up to 2 s while Redis is away): a close() that ran meanwhile has closed the breakers'
      // side already, and a subscriber opened now would reconnect forever.
      if (!this.closeCalled) this.sharedBreakers?.open()
    }
    for (const service of this.services.values()) service.open()
    // After the services: the worker's first attempt may start at once.
    if (!this.closeCalled) await this.sender?.open()
  }

  /** `true` once `close()` was called. */
  get closed (): boolean {
    return this.closeCalled
  }

  /** Closes every service: calls in flight may finish for up to `closeTimeout`, then are aborted. */
  async close (): Promise<void> {
    this.closeCalled = true
    // The queue first: no attempt starts while the services drain the ones in flight (which its close waits for).
    const sending = this.sender?.close()
    const timeout = this.resolved.closeTimeout
    try {
      await Promise.all([sending, ...[...this.services.values()].map(async (s) => await s.close(timeout))])
    } finally {
      // After the services: their calls may use Redis until they end. A connection given to the library stays open
      // (the subscriber made from it is closed).
      this.sharedBreakers?.close()
      await this.redis?.close()
      if (this.logging) {
        this.logging = false
        releaseLogSubscriber()
        this.releaseTelemetry?.()
        this.releaseTelemetry = undefined
      }
    }
  }

  /** The client of `name` a policy of the service `from` calls (`ServiceRuntime.client`): `client(name)`. */
  private clientFor (from: string, name: string): HttpClient {
    if (!this.resolved.services.has(name)) {
      throw this.unknown(name, `${from}: calls service ${JSON.stringify(name)}, which is not registered`)
    }
    if (!this.services.has(name)) {
      throw new Error(`${from}: calls service ${JSON.stringify(name)} while the services are still being built: ` +
        'take its client when a call runs, not when the policy is made')
    }
    return this.client(name as ServiceName)
  }

  private unknown (name: string, why = `unknown service ${JSON.stringify(name)}`): Error {
    const e = new UnknownServiceError(`${why}; known services: ${this.known === '' ? '(none)' : this.known}`)
    e.known = this.names()
    e.service = String(name)
    return e
  }
}

/** The registry without Fastify, for workers and scripts: call `open()` first and `close()` at the end. */
export function createHttpServices (options: CreateHttpServicesOptions): HttpServices {
  const { logger, ...rest } = options ?? {}
  return new HttpServices(rest, logger)
}

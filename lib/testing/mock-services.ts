import { AssertionError } from 'node:assert'
import { MockAgent, type Dispatcher, type Interceptable } from 'undici'
import { resolveOptions } from '../config/resolve'
import type { HttpServicesOptions } from '../config/types'
import { suggest } from '../config/validate'
import type { HttpServices } from '../services'
import { MockUnmatchedError } from './errors'
import { mockCall, relativePath, type ServiceTarget } from './mock-call'
import { mockDispatcher, type MockRouter } from './mock-dispatcher'
import { MockService, matcherText, serviceOf, type MockServiceHost } from './mock-service'
import type { MockCall, PendingMock } from './types'

type PendingInterceptor = ReturnType<MockAgent['pendingInterceptors']>[number]

function originOf (origin: unknown): string {
  try {
    return new URL(String(origin)).origin
  } catch {
    return String(origin)
  }
}

function describePending (p: PendingMock, owner = ''): string {
  const left = p.remaining === Infinity ? 'persistent' : `${p.remaining} more expected`
  return `  ${owner}${p.method} ${p.path} -> ${p.reply} (called ${p.invoked} time${p.invoked === 1 ? '' : 's'}, ${left})`
}

function describeList (pending: PendingMock[]): string {
  return pending.length === 0 ? ' none' : '\n' + pending.map((p) => describePending(p)).join('\n')
}

/**
 * A set of mock services for tests: undici's `MockAgent` underneath, with interceptors addressed by service
 * name. Give its `dispatcher` to the plugin (or pass the options through `attach()`): every service then sends
 * its calls to the mocks instead of its own pool, through its whole pipeline (retry, breaker, auth, timeouts,
 * telemetry), so a test exercises the real configuration. Real network is refused: a call no interceptor matches
 * fails with `MockUnmatchedError`, naming the service, method and path and listing the pending interceptors.
 *
 * ```ts
 * const mocks = mockHttpServices()
 * await app.register(httpServices, mocks.attach({ services: { billing: { baseUrl: 'http://billing' } } }))
 * mocks.service('billing').intercept({ path: '/invoices', query: { user: '7' } }).reply(200, [{ id: 1 }])
 * // … app.inject(…) …
 * mocks.assertAllCalled()
 * t.afterEach(() => mocks.reset()); t.teardown(() => mocks.close())
 * ```
 */
export class MockHttpServices implements MockServiceHost {
  /** undici's MockAgent underneath (call history on, net connect off): for what this kit does not wrap. */
  readonly agent: MockAgent
  /** The dispatcher to give the plugin's `dispatcher` option (or `createHttpServices`). Not closed by the plugin. */
  readonly dispatcher: Dispatcher
  private readonly targets = new Map<string, ServiceTarget>()
  private readonly mocks = new Map<string, MockService>()
  private readonly origins = new Set<string>()
  private readonly unmatchedCalls: MockUnmatchedError[] = []
  /** The registries served (each `createHttpServices` / plugin registration given this dispatcher): `reset()` resets them. */
  private readonly registries = new Set<HttpServices>()

  constructor () {
    this.agent = new MockAgent({ enableCallHistory: true })
    this.agent.disableNetConnect()
    const router: MockRouter = {
      route: (opts) => this.route(opts),
      unmatched: (opts, cause) => this.unmatchedError(opts, cause),
      serve: (registry) => this.serve(registry)
    }
    this.dispatcher = mockDispatcher(this.agent, router)
  }

  /**
   * `options` with this set's dispatcher, for `app.register(httpServices, mocks.attach(options))`. The services
   * are known at once (before the plugin runs), so `service(name)` works right after.
   */
  attach<T extends HttpServicesOptions> (options: T): T & { dispatcher: Dispatcher } {
    const attached = { ...options, dispatcher: this.dispatcher }
    try {
      for (const s of resolveOptions(attached).services.values()) this.learn(s.name, s.origins, s.basePath)
    } catch {
      // bad options: the plugin reports them, with its own message, when it is registered
    }
    return attached
  }

  /** The mock of service `name`. The service must be known: registered with this dispatcher, or `attach()`ed. */
  service (name: string): MockService {
    this.target(name)
    let mock = this.mocks.get(name)
    if (mock === undefined) {
      mock = new MockService(name, this)
      this.mocks.set(name, mock)
    }
    return mock
  }

  /** undici's mock pool of an origin no service uses (calls to it still fail clearly when unmatched). */
  pool (origin: string): Interceptable {
    const o = originOf(origin)
    this.origins.add(o)
    return this.agent.get(o)
  }

  /** Every call that reached the mocks since the last `reset()`, in order; with `service`, that service's only. */
  calls (service?: string): MockCall[] {
    const history = this.agent.getCallHistory()?.calls() ?? []
    const out: MockCall[] = []
    for (const log of history) {
      const target = this.targetAt(log.origin, log.path)
      if (service !== undefined && target?.name !== service) continue
      out.push(mockCall(target, log.origin, log.fullUrl, log.method, log.headers, log.body))
    }
    return out
  }

  /** The calls no interceptor matched since the last `reset()` (each failed with the error listed). */
  unmatched (service?: string): MockUnmatchedError[] {
    return service === undefined ? [...this.unmatchedCalls] : this.unmatchedCalls.filter((e) => e.service === service)
  }

  /** Interceptors still waiting for calls; with `service`, that service's only. */
  pending (service?: string): PendingMock[] {
    const out: PendingMock[] = []
    for (const p of this.agent.pendingInterceptors()) {
      const view = this.pendingView(p)
      if (service === undefined || view.service === service) out.push(view)
    }
    return out
  }

  /**
   * Throws an `AssertionError` listing what went wrong when an interceptor is still pending or a call matched no
   * interceptor (a route that maps downstream errors could otherwise hide it); with `service`, for that service only.
   */
  assertAllCalled (service?: string): void {
    const pending = this.pending(service)
    const unmatched = this.unmatched(service)
    if (pending.length === 0 && unmatched.length === 0) return
    const parts: string[] = []
    if (pending.length > 0) parts.push(`${pending.length} interceptor(s) never called:\n${pending.map((p) => describePending(p, `${p.service ?? p.origin}: `)).join('\n')}`)
    if (unmatched.length > 0) parts.push(`${unmatched.length} call(s) matched no interceptor:\n${unmatched.map((e) => `  ${e.message.split('\n')[0]}`).join('\n')}`)
    throw new AssertionError({ message: `mocks${service !== undefined ? ` of ${service}` : ''}: ${parts.join('\n')}`, stackStartFn: this.assertAllCalled })
  }

  /**
   * Forgets every interceptor, the call history and the unmatched calls, and resets every service that uses these
   * mocks (`HttpServices.reset()`: breakers closed, retry budgets, rate limiters, bulkhead counters and `stats()`
   * back to zero), so a test that opened a breaker leaves nothing behind: call it between tests.
   */
  reset (): void {
    for (const origin of this.origins) this.agent.get(origin).cleanMocks()
    this.agent.clearCallHistory()
    this.unmatchedCalls.length = 0
    for (const registry of this.registries) {
      // An app closed after its test is gone for good: it is forgotten, not reset.
      if (registry.closed) this.registries.delete(registry)
      else registry.reset()
    }
  }

  /** Closes the MockAgent; calls made afterwards fail with `ClientClosedError`. */
  async close (): Promise<void> {
    await this.agent.close()
  }

  /** @internal */
  target (name: string): ServiceTarget {
    const target = this.targets.get(name)
    if (target !== undefined) return target
    const known = [...this.targets.keys()]
    const list = `(known: ${known.length === 0 ? 'none' : known.join(', ')})`
    // Once a registry was served, its services are all known: the name is wrong, not the set-up.
    if (this.registries.size > 0 || known.length > 0) {
      const close = suggest(name, known)
      throw new Error(`mocks: unknown service ${JSON.stringify(name)}${close === undefined ? '' : ` (did you mean "${close}"?)`} ${list}`)
    }
    throw new Error(`mocks: unknown service ${JSON.stringify(name)} ${list}. ` +
      'Register the plugin with { dispatcher: mocks.dispatcher } and await it, or pass its options through mocks.attach(options), first.')
  }

  private learn (name: string, origins: string[], basePath: string): void {
    this.targets.set(name, { name, origins, basePath })
    for (const o of origins) this.origins.add(o)
  }

  private serve (registry: HttpServices): void {
    this.registries.add(registry)
    for (const name of registry.names()) {
      const o = registry.get(name).options
      this.learn(name, o.origins, o.basePath)
    }
  }

  /** The service a request to `origin` + `path` belongs to: the one with the longest base path that holds it. */
  private targetAt (origin: unknown, path: string): ServiceTarget | undefined {
    const o = originOf(origin)
    let best: ServiceTarget | undefined
    for (const t of this.targets.values()) {
      if (!t.origins.includes(o)) continue
      const base = t.basePath
      const inside = base === '' || (path.startsWith(base) && (path.length === base.length || path[base.length] === '/' || path[base.length] === '?'))
      if (inside && (best === undefined || base.length > best.basePath.length)) best = t
    }
    return best
  }

  private route (opts: Dispatcher.DispatchOptions): Dispatcher.DispatchOptions {
    const origin = originOf(opts.origin)
    this.origins.add(origin)
    const target = this.targetAt(origin, opts.path)
    // The history keeps the headers object it is given, and a later attempt may change it in place: a copy keeps
    // each attempt's headers as they were sent.
    const headers = opts.headers
    const sent = { ...opts, headers: headers !== null && typeof headers === 'object' && !Array.isArray(headers) ? { ...headers } : headers }
    // A service with several upstreams is mocked as one: its interceptors sit on its first origin.
    if (target !== undefined && target.origins.length > 1 && origin !== target.origins[0]) sent.origin = target.origins[0]
    return sent as Dispatcher.DispatchOptions
  }

  private unmatchedError (opts: Dispatcher.DispatchOptions, cause: Error): Error {
    const origin = originOf(opts.origin)
    const target = this.targetAt(origin, opts.path)
    const method = String(opts.method)
    const path = relativePath(target, opts.path)
    // undici's reason without its net.connect sentence: "… not matched for path '/x', 0 interceptor(s) remaining out of 1 defined"
    const m = /^([\s\S]*?): subsequent request[^)]*\)([\s\S]*)$/.exec(cause.message)
    const reason = m === null ? cause.message : m[1] + m[2]
    let message: string
    let pending: PendingMock[]
    if (target !== undefined) {
      pending = this.pending(target.name)
      message = `${target.name}: no mock matches ${method} ${path} (sent to ${origin}${opts.path})\n` +
        `pending interceptors of ${target.name}:${describeList(pending)}\nundici: ${reason}`
    } else {
      pending = this.pending().filter((p) => p.origin === origin)
      message = `no service of the mocks uses ${origin}: no mock matches ${method} ${opts.path}\n` +
        `pending interceptors of ${origin}:${describeList(pending)}`
    }
    const e = new MockUnmatchedError(message, { cause })
    e.service = target?.name
    e.method = method
    e.origin = origin
    e.pending = pending
    this.unmatchedCalls.push(e)
    return e
  }

  private pendingView (p: PendingInterceptor): PendingMock {
    const rawPath: unknown = p.path
    const target = typeof rawPath === 'string'
      ? this.targetAt(p.origin, rawPath)
      : this.targets.get(serviceOf(rawPath) ?? '') ?? this.targetAt(p.origin, '')
    const data = p.data as { error?: unknown, statusCode?: number, callback?: unknown }
    const invoked = (p as { timesInvoked?: number }).timesInvoked ?? 0
    const reply = data.error !== null && data.error !== undefined ? 'error' : typeof data.callback === 'function' ? 'dynamic' : data.statusCode ?? 'dynamic'
    return {
      service: target?.name,
      origin: p.origin,
      method: matcherText(p.method),
      path: typeof rawPath === 'string' ? relativePath(target, rawPath) : matcherText(rawPath),
      reply,
      invoked,
      remaining: p.persist ? Infinity : (p.times ?? 1) - invoked
    }
  }
}

/** A new set of mock services (see `MockHttpServices`). Close it in the test's teardown. */
export function mockHttpServices (): MockHttpServices {
  return new MockHttpServices()
}

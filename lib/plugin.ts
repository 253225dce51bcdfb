import type { ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { ClientScope } from './call'
import { CallSignal } from './call-signal'
import type { HttpClient } from './client'
import type { HttpServicesOptions } from './config/types'
import { kMaxTimerMs } from './config/validate'
import { RequestAbortedError } from './errors'
import { registerUnderPressure } from './health'
import { sendResponseOnSend, sendResponseUnserialized } from './reply'
import type { Logger } from './pipeline/types'
import { HttpServices, type ServiceName } from './services'
import { copyHeaders } from './copy-headers'
import { registerStatusPage } from './status/routes'

declare module 'fastify' {
  interface FastifyInstance {
    /** The registry of downstream services (`get`, `has`, `names`, `stats`, `reset`, `client`). */
    httpServices: HttpServices
  }
  interface FastifyRequest {
    /**
     * The client of service `name`, bound to this request: its logger, its request id and forwarded headers,
     * its abort (client gone: calls aborted) and its deadline. Cached per request.
     */
    httpClient: (name: ServiceName) => HttpClient
  }
}

const kClients = Symbol('httpServices.clients')
const kStart = Symbol('httpServices.start')

interface ScopedRequest extends FastifyRequest {
  [kClients]: RequestScope | null
  [kStart]: number
}

const kMilliseconds = /^\d{1,10}$/

/**
 * The abort signal of one inbound request, shared by its calls. Each reader of `reason` (undici, a retry sleep, a
 * follower) gets an error of its own, so stamping one call's details on it never shows up on another call's error.
 */
class InboundSignal extends CallSignal {
  private readonly requestId: string

  constructor (requestId: string) {
    super()
    this.requestId = requestId
  }

  override get reason (): unknown {
    if (!this.aborted) return undefined
    return new RequestAbortedError(`request ${this.requestId}: the inbound request was aborted by its client`)
  }

  /** Watches the response: closing before it finished is the client going away. */
  watchResponse (res: ServerResponse): void {
    res.on('close', () => { if (!res.writableFinished) this.abort(undefined) })
  }

  /** The fallback when the response cannot be found: the request reports the abort itself. */
  watchRequest (req: FastifyRequest['raw']): void {
    req.on('close', () => { if (req.aborted) this.abort(undefined) })
  }
}

/**
 * The scope of one inbound request, and its clients: created on its first `httpClient()` call. A class, not an
 * object of closures: it is made once per inbound request that calls out, on the hot path of every such request.
 */
class RequestScope implements ClientScope {
  readonly log: Logger
  readonly deadline: number
  private inbound: InboundSignal | undefined = undefined
  private readonly request: ScopedRequest
  private readonly registry: HttpServices
  private readonly requestIdHeader: string | false
  private firstName: string | undefined = undefined
  private firstClient: HttpClient | undefined = undefined
  private others: Map<string, HttpClient> | undefined = undefined

  constructor (request: ScopedRequest, registry: HttpServices) {
    const { requestIdHeader, requestDeadline, deadlineHeader } = registry.resolved
    this.request = request
    this.registry = registry
    this.requestIdHeader = requestIdHeader
    this.log = request.log as unknown as Logger
    let budget = requestDeadline > 0 ? requestDeadline : Infinity
    if (deadlineHeader !== false) {
      const raw = request.headers[deadlineHeader]
      // Whole milliseconds only: Number('') is 0, which would fail every call at once. A budget longer than a timer
      // can wait (24.8 days) is no deadline: Node would fire such a timer after 1 ms.
      if (typeof raw === 'string' && kMilliseconds.test(raw)) {
        const ms = Number(raw)
        if (ms <= kMaxTimerMs) budget = Math.min(budget, ms)
      }
    }
    const start = request[kStart]
    this.deadline = budget === Infinity ? Infinity : (start > 0 ? start : performance.now()) + budget
  }

  /** The client of service `name` for this request: made on first use, then the same object. */
  client (name: string): HttpClient {
    // Most requests call one service: that one needs no map.
    if (name === this.firstName) return this.firstClient as HttpClient
    if (this.firstName === undefined) {
      const client = this.registry.bind(name, this)
      this.firstName = name
      this.firstClient = client
      return client
    }
    this.others ??= new Map()
    let client = this.others.get(name)
    if (client === undefined) {
      client = this.registry.bind(name, this)
      this.others.set(name, client)
    }
    return client
  }

  signal (): CallSignal {
    let s = this.inbound
    if (s === undefined) {
      s = new InboundSignal(this.request.id)
      this.inbound = s
      const raw = this.request.raw
      // The response closing before it finished is the client going away. The request's own 'close' cannot tell
      // once its body was read (Node closes it right then, before any answer), so watch the response, found
      // through the socket (`res.req` proves it is this request's); else fall back to the request.
      const res = (raw.socket as { _httpMessage?: ServerResponse } | null)?._httpMessage
      if (res != null && res.req === raw) {
        // The client may be gone already: a call started after that must not run.
        if (res.destroyed && !res.writableFinished) s.abort(undefined)
        else if (!res.writableFinished) s.watchResponse(res)
      } else if (raw.aborted || raw.socket == null || raw.socket.destroyed) {
        s.abort(undefined)
      } else {
        s.watchRequest(raw)
      }
    }
    return s
  }

  headersFor (base: Record<string, string>, forward: string[]): Record<string, string> {
    const { requestIdHeader, request } = this
    if (requestIdHeader === false && forward.length === 0) return base
    const out = copyHeaders(base)
    // Fastify's own request id: it honours an inbound id only when Fastify is told to trust one (its
    // `requestIdHeader` option), so an untrusted, unbounded header is never passed on.
    if (requestIdHeader !== false) out[requestIdHeader] = String(request.id)
    for (const name of forward) {
      const value = request.headers[name]
      if (value === undefined) continue
      out[name] = Array.isArray(value) ? value.join(', ') : value
    }
    return out
  }
}

/** The plugin's body: index.ts wraps it with fastify-plugin and exports that as the package. */
export const httpServicesPlugin: FastifyPluginAsync<HttpServicesOptions> = async function httpServicesPlugin (fastify, options) {
  const registry = new HttpServices(options ?? {}, fastify.log as unknown as Logger)
  const { requestDeadline, deadlineHeader } = registry.resolved

  fastify.decorate('httpServices', registry)
  if (registry.resolved.underPressure !== undefined) await registerUnderPressure(fastify, registry, registry.resolved.underPressure)
  if (registry.resolved.statusPage !== undefined) registerStatusPage(fastify, registry, registry.resolved.statusPage)
  fastify.decorateRequest(kClients as unknown as string, null)
  fastify.decorateRequest('httpClient', function httpClient (this: FastifyRequest, name: ServiceName): HttpClient {
    const request = this as ScopedRequest
    let scope = request[kClients]
    if (scope === null) {
      scope = new RequestScope(request, registry)
      request[kClients] = scope
    }
    return scope.client(name)
  })

  if (requestDeadline > 0 || deadlineHeader !== false) {
    fastify.decorateRequest(kStart as unknown as string, 0)
    fastify.addHook('onRequest', function stampStart (request, _reply, done) {
      (request as ScopedRequest)[kStart] = performance.now()
      done()
    })
  }

  // `return res` / `reply.send(res)` with an HttpResponse sends the downstream's answer (lib/reply.ts).
  fastify.addHook('preSerialization', sendResponseUnserialized)
  fastify.addHook('onSend', sendResponseOnSend)

  fastify.addHook('onReady', async function openHttpServices () {
    await registry.open()
  })
  fastify.addHook('onClose', async function closeHttpServices () {
    await registry.close()
  })
}

import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { CallSignal } from '../call-signal'
import type { ResolvedService } from '../config/resolved'
import type { HttpResponse } from '../response'
import type { CallOptions, JsonCallOptions } from '../client-types'
import type { RedisConnection } from '../redis/connection'

/** The part of pino's API this library uses; Fastify's `request.log` and `fastify.log` fit it. */
export interface Logger {
  debug: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
  child: (bindings: Record<string, unknown>) => Logger
}

/**
 * What a request body may be once the client has encoded `json` / `form` / `multipart`. An async iterable that is
 * not a Readable (a multipart form without streams) is read afresh on each attempt, so it is replayable.
 */
export type RequestBody = string | Buffer | Uint8Array | Readable | AsyncIterable<Uint8Array> | null

/** Counters a service keeps; policies add their own entries under their name. */
export interface ServiceCounters {
  requests: number
  attempts: number
  failures: number
  inFlight: number
}

/** What a policy sees of its service, at start-up and on every call. */
export interface ServiceRuntime {
  readonly name: string
  readonly options: ResolvedService
  /** The service's logger (bound to `{ service }`), for events that belong to no call (breaker state changes). */
  readonly log: Logger
  readonly counters: ServiceCounters
  /** The dispatcher, once the service is open. */
  readonly dispatcher: Dispatcher | undefined
  /**
   * The registry's injected `dispatcher` option (a MockAgent, the mock kit's), if any: a request the policy makes
   * outside every service (OAuth2's token request without `tokenService`) goes through it too. Optional for test doubles.
   */
  readonly injectedDispatcher?: Dispatcher | undefined
  /**
   * State a policy keeps once per service, for both of the service's chains (breakers, limiters, budgets):
   * `create` runs on the first call for `key`; later calls return what it made.
   */
  shared: <T>(key: string, create: () => T) => T
  /** What `shared` made for `key`, if anything. */
  sharedIf: <T>(key: string) => T | undefined
  /** Registers a function whose result is merged into `stats()` under `key`. */
  addStats: (key: string, fn: () => unknown) => void
  /**
   * A client of another service of the same registry, for a policy that calls one at call time (OAuth2's
   * `tokenService`). It is bound to no inbound request: a call it makes carries no request's deadline, signal or
   * `reqId` unless the policy passes them (`signal`, `timeout`). Throws `UnknownServiceError`, naming this service and
   * `name`, when the registry has no service `name`.
   */
  client: (name: string) => ServiceClient
  /** Registers a function run once the service is closed (policies stop their timers: breakers). Optional for test doubles. */
  onClose?: (fn: () => void) => void
  /**
   * Registers a function run by `reset()` (the service's and the registry's, and the mock kit's `mocks.reset()`), after
   * the service's own counters are zeroed: a policy forgets what it learnt (breakers close, budgets and limiters
   * refill, counters restart) without dropping calls in flight. Optional for test doubles.
   */
  onReset?: (fn: () => void) => void
  /**
   * Aborts when `closeTimeout` passes with calls still in the pipeline: a call waiting in a retry backoff, the
   * bulkhead queue or a rate-limit wait then ends with `ClientClosedError`. Only a waiting call listens to it.
   * Optional for test doubles.
   */
  readonly closing?: CallSignal
  /**
   * The registry the service belongs to (`fastify.httpServices`, or what `createHttpServices()` returned): the
   * diagnostics messages carry it, so a subscriber can tell apps apart. Optional for test doubles.
   */
  readonly registry?: object
  /** The registry's Redis connection (the `redis` option), when it has one. Optional for test doubles. */
  readonly redis?: RedisConnection
}

/**
 * The calls a policy may make to another service of its registry (`ServiceRuntime.client`): those of an `HttpClient`,
 * declared here so that the pipeline does not import the client.
 */
export interface ServiceClient {
  /** The service name. */
  readonly service: string
  /** Sends a request and resolves with the response (rejecting a status >= 400 unless `throwHttpErrors: false`). */
  request: (method: string, path: string, options?: CallOptions) => Promise<HttpResponse>
  /** GET and parse the JSON body. */
  getJson: <T = unknown>(path: string, options?: JsonCallOptions) => Promise<T>
  /** POST `body` as JSON and parse the JSON answer. */
  postJson: <T = unknown>(path: string, body?: unknown, options?: JsonCallOptions) => Promise<T>
}

/** Where a circuit breaker is: `closed` (calls flow), `open` (calls fail fast), `halfOpen` (one probe may pass). */
export type BreakerState = 'closed' | 'open' | 'halfOpen'

/**
 * What a service's circuit breaker(s) tell the rest of the service (the retry policy before it sleeps, `stats()` and
 * the final error), published by the breaker policy as `service.shared(kBreakerView, …)` so that no other policy
 * imports it. Read only on rare paths (a retry about to sleep, a call that failed).
 */
export interface BreakerView {
  /**
   * `open` only when no attempt can go anywhere now (with one breaker per upstream: every upstream's is open);
   * `halfOpen` when a probe may pass, `closed` otherwise.
   */
  readonly state: BreakerState
  /** Milliseconds until an attempt may go somewhere again: more than 0 only while `state` is `open`. */
  readonly retryAfterMs: number
}

/** The `shared` key under which the breaker policy publishes its `BreakerView`. */
export const kBreakerView = 'breaker'

/**
 * One logical call as it flows through the pipeline. Policies may change `path`, `headers`, `attempt`,
 * `signal` and `deadline` for the layers below them.
 */
export interface CallContext {
  readonly service: ServiceRuntime
  /**
   * The call this context is: itself, or, for the view a policy makes of it for one attempt (hedging), the call it
   * was made from (views inherit it). The transport marks each attempt's response and error with it (see
   * `./attempt-call`), so a policy above can pick up the call from the outcome without holding it in a closure.
   */
  readonly call: CallContext
  /** Upper-case method (a redirect policy may turn it into GET). */
  method: string
  /** Path and query as sent, base path included. */
  path: string
  /** The path as the caller wrote it, before `params` were filled in (`/users/:id`): for telemetry. */
  readonly route: string
  /**
   * Request headers (lower-case names). The object may be shared with other calls:
   * change it only through `setHeader()`, which copies it first.
   */
  headers: Record<string, string>
  body: RequestBody
  /** `false` when the body is a stream: it cannot be sent twice. */
  readonly replayable: boolean
  /** Aborts the call (caller's signal, inbound request gone, total timeout). */
  signal: CallSignal | undefined
  /** `performance.now()` time by which the whole call must end; `Infinity` when none. */
  deadline: number
  /** 1-based number of the attempt being made. */
  attempt: number
  /** Per-call phase timeouts handed to undici. */
  headersTimeout: number
  bodyTimeout: number
  /** `true` for the *Json helpers: the transport reads a 2xx body before the attempt counts as answered. */
  bufferBody: boolean
  /**
   * The upstream this attempt goes to, when the service picks it itself: set by the breaker policy of a service with
   * several `baseUrl`s and a breaker (one breaker per upstream). `undefined` otherwise: the transport then sends to
   * the first origin and the dispatcher (Pool, BalancedPool) picks.
   */
  upstream: { readonly origin: string } | undefined
  /** The caller's options, for policies that take per-call overrides. */
  readonly options: CallOptions
  /** The bound logger (request's `reqId` and `{ service }`), created on first use. */
  readonly log: Logger
  /** Sets a request header, copying the shared header object on first change. */
  setHeader: (name: string, value: string) => void
  /**
   * @internal The call's diagnostics message (`../diagnostics/messages`: `CallMessage`), made when a subscriber first
   * needs it and kept on the call itself (`call`), so every event of the call shares it. `undefined` until then.
   */
  diagnostics?: object
}

/** The rest of the pipeline below a policy. */
export type Next = (ctx: CallContext) => Promise<HttpResponse>

/** One resilience or cross-cutting policy: it may act before and after calling `next`. */
export type Policy = (ctx: CallContext, next: Next) => Promise<HttpResponse>

/**
 * Where the chain below a layer reports how one call (or attempt) ended: exactly once, with the call it was given.
 * The chain runs on these callbacks rather than on a promise per layer (`./chain`): a promise and its reaction per
 * policy per call was most of what the pipeline cost over undici itself.
 */
export interface Outcome {
  resolved: (ctx: CallContext, res: HttpResponse) => void
  rejected: (ctx: CallContext, err: unknown) => void
}

/** A layer of the chain in its callback form: hands `ctx` on and reports its end to `out`. Never throws. */
export type Layer = (ctx: CallContext, out: Outcome) => void

/**
 * A policy written as steps around the call below it, for the policies every call goes through (retry, breaker,
 * bulkhead, rate limit, total timeout): the chain runs them with no promise of their own when `enter` lets the call
 * go on at once, which is the common case. A policy with more to do in between (auth, hedging, redirects …) is a
 * `Policy` function instead; both kinds mix freely in the chain.
 */
export interface PolicySteps {
  /**
   * The call on its way down. `undefined`: it goes on below now, and `response` / `failure` get its outcome. A
   * promise: this policy took the call (it waits, refuses, or goes below in a way of its own through `below`, the
   * chain below it as a function); the call's outcome is that promise's, and neither `response` nor `failure` is
   * called for it. A throw fails the call.
   */
  enter: (ctx: CallContext, below: Next) => Promise<HttpResponse> | undefined
  /** The answer from below, for a call `enter` let go on: what goes up (a response, or a promise of one); a throw fails the call. */
  response?: (res: HttpResponse, ctx: CallContext, below: Next) => HttpResponse | Promise<HttpResponse>
  /** A failure from below, for a call `enter` let go on: throw it (or another error), or answer instead. */
  failure?: (err: unknown, ctx: CallContext, below: Next) => HttpResponse | Promise<HttpResponse>
}

/** The name of a call option (`retry`, `timeout` …): a key of `CallOptions`. */
export type CallOptionName = keyof CallOptions

/**
 * Builds a policy for a service at start-up, or returns `undefined` when the service does not use it
 * (an unconfigured policy is not in the chain and costs nothing per call).
 *
 * `perCall` is `true` when building the second chain a service keeps for calls that pass one of the `callOptions` of
 * a policy its own chain lacks, or carry an inbound deadline while its chain has no `deadline`: a policy those can
 * switch on must then be returned even when the service leaves it off, and pass straight through when the call does
 * not use it either.
 */
export interface PolicyFactory {
  (service: ServiceRuntime, perCall: boolean): Policy | PolicySteps | undefined
  /**
   * The call options that can turn this policy on for one call (`retry`, `timeout` …), declared beside the factory.
   * A call passing one of them runs through the service's per-call chain when the service's own chain lacks this
   * policy; when the chain holds it, the call stays there, so the policy returned for the service's chain (`perCall`
   * false) must honour those options too. A policy that reads an option only when the service configures it (hedging
   * reads `retry`) leaves it out: its instance in the chain sees every call. The client derives its check from these
   * lists once per service (`perCallRouting` in `./index`); a call that passes none of them pays nothing.
   */
  callOptions?: readonly CallOptionName[]
}

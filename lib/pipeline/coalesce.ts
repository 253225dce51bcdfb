import { CallSignal } from '../call-signal'
import { copyHeaders } from '../copy-headers'
import { HttpResponse } from '../response'
import type { CallContext, Next, Policy, PolicyFactory, ServiceRuntime } from './types'

/**
 * Request coalescing (`coalesce: true`): identical GETs in flight share one upstream request, and each caller gets a
 * response of its own (its own `HttpResponse`, its own read of the body). Identical means the same path and query
 * and the same request headers (credentials, `Accept`, `Accept-Encoding` and the rest), apart from headers that name
 * the inbound request (the registry's `requestIdHeader`, `ignoreHeaders`), and the same `token` / `auth` call
 * options. A call with a body, another method, or call options that change how the request is sent or read
 * (`timeout`, `retry`, `decompress`) runs on its own.
 *
 * Written here rather than with undici's `deduplicate` interceptor: that one hangs the other waiters when the first
 * caller aborts (undici issue #5673), and it sits below the policies, so merged calls would each still take a
 * rate-limit permit and a bulkhead slot. Here the shared request goes through the chain below once; it runs under
 * the first caller's per-attempt limits, with a signal of its own that aborts only once every caller has left (each
 * waits under its own signal: timeout, deadline, abort), so a caller who leaves harms no other. Its body is read into
 * memory (at most `maxResponseSize`) so each caller can read it.
 */
export const coalesce: PolicyFactory = (service) => {
  const settings = service.options.coalesce
  if (settings === undefined) return undefined
  const flights = flightsOf(service)
  const ignore = settings.ignoreHeaders
  return (ctx, next) => {
    if (ctx.method !== 'GET' || ctx.body !== null || runsAlone(ctx)) return next(ctx)
    const key = flightKey(ctx, ignore)
    let flight = flights.open.get(key)
    if (flight === undefined) {
      flight = new Flight(ctx, next, () => { if (flights.open.get(key) === flight) flights.open.delete(key) })
      flights.open.set(key, flight)
    } else {
      flights.merged++
    }
    return flight.join(ctx)
  }
}

/** Call options that change how the request is sent or read: such a call is not merged with others. */
function runsAlone (ctx: CallContext): boolean {
  const o = ctx.options
  return o.timeout !== undefined || o.retry !== undefined || o.decompress !== undefined
}

/** The path (query included), the headers but those that only name the inbound request, and the call's credentials. */
function flightKey (ctx: CallContext, ignore: ReadonlySet<string>): string {
  const headers = ctx.headers
  const names: string[] = []
  for (const name in headers) if (!ignore.has(name)) names.push(name)
  names.sort()
  let key = ctx.path
  for (const name of names) key += `\n${name}:${headers[name]}`
  const { token, auth } = ctx.options
  if (token !== undefined) key += `\n\0token:${String(token)}`
  if (auth !== undefined) key += `\n\0auth:${String(auth)}`
  return key
}

interface Flights {
  /** The requests in flight by key; a flight leaves the map once it settles or every caller left. */
  readonly open: Map<string, Flight>
  /** Calls that joined a request already in flight. */
  merged: number
}

/** The service's flights, one map for both of its chains. */
function flightsOf (service: ServiceRuntime): Flights {
  return service.shared('coalesce', () => {
    const flights: Flights = { open: new Map(), merged: 0 }
    service.addStats('coalesce', () => ({ inFlight: flights.open.size, merged: flights.merged }))
    return flights
  })
}

/** What the shared request gave: the parts each caller's own response is made of, or the error. */
type Outcome = { res: HttpResponse, bytes: Buffer } | { error: unknown }

/** One upstream request and the callers waiting for it. */
class Flight {
  private callers = 0
  private readonly signal = new CallSignal()
  private outcome: Outcome | undefined = undefined
  private readonly waiting: Array<(outcome: Outcome) => void> = []
  /** Whether a caller got the outcome itself already (the others get copies of what may be changed). */
  private answered = false

  constructor (first: CallContext, next: Next, private readonly leave: () => void) {
    // A view of the first call: what the policies below set (signal, attempt, headers) stays on the view.
    const view = Object.create(first) as CallContext
    view.signal = this.signal
    view.bufferBody = true
    // Not the first caller's deadline: it would cut retries, waits and the deadline headers short for every caller.
    // Each caller waits under its own; the request goes on while any of them does.
    view.deadline = Infinity
    let pending: Promise<HttpResponse>
    try {
      pending = next(view)
    } catch (err) {
      pending = Promise.reject(err)
    }
    pending.then(async (res) => {
      this.settle({ res, bytes: await res.takeBytes() })
    }).catch((error: unknown) => this.settle({ error }))
  }

  /** The caller's own response once the shared request answers, or its own abort reason if it leaves first. */
  join (ctx: CallContext): Promise<HttpResponse> {
    if (this.outcome !== undefined) return this.answer(ctx, this.outcome)
    this.callers++
    return new Promise<HttpResponse>((resolve, reject) => {
      const signal = ctx.signal
      let onAbort: (() => void) | undefined
      const done = (outcome: Outcome): void => {
        if (onAbort !== undefined) signal?.removeListener('abort', onAbort)
        this.answer(ctx, outcome).then(resolve, reject)
      }
      if (signal !== undefined) {
        if (signal.aborted) {
          this.left()
          reject(signal.reason)
          return
        }
        onAbort = () => {
          const i = this.waiting.indexOf(done)
          if (i !== -1) this.waiting.splice(i, 1)
          this.left()
          reject(signal.reason)
        }
        signal.on('abort', onAbort)
      }
      this.waiting.push(done)
    })
  }

  /** A caller left before the answer: the last one to leave cancels the request, and a new caller starts afresh. */
  private left (): void {
    if (--this.callers > 0 || this.outcome !== undefined) return
    this.leave()
    this.signal.abort(new Error('every caller of a coalesced request left'))
  }

  private settle (outcome: Outcome): void {
    this.outcome = outcome
    this.leave()
    const waiting = this.waiting.splice(0)
    for (const done of waiting) done(outcome)
  }

  /**
   * The caller's own response (the shared status and bytes, never changed: readers copy; headers of its own) or its
   * own error: the first caller gets the error itself, the others a copy, so one changing its error changes no other.
   */
  private answer (ctx: CallContext, outcome: Outcome): Promise<HttpResponse> {
    const first = !this.answered
    this.answered = true
    if ('error' in outcome) return Promise.reject(first ? outcome.error : copyOf(outcome.error))
    const shared = outcome.res
    const res = HttpResponse.unread(shared.status, first ? shared.headers : copyHeaders(shared.headers), { ...shared.meta, method: ctx.method })
    res.setBody(outcome.bytes)
    res.attempts = shared.attempts
    res.call = ctx
    return Promise.resolve(res)
  }
}

/** A copy of an error with every own property (message, stack, cause, code, status …) and the same class. */
function copyOf (err: unknown): unknown {
  if (!(err instanceof Error)) return err
  const copy = Object.create(Object.getPrototypeOf(err)) as Error
  for (const name of Reflect.ownKeys(err)) {
    Object.defineProperty(copy, name, Object.getOwnPropertyDescriptor(err, name) as PropertyDescriptor)
  }
  return copy
}

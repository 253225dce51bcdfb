import type { HttpResponse } from '../response'
import type { CallContext } from './types'

/**
 * Which call an attempt's outcome belongs to. The transport marks every response and error it settles an attempt
 * with; a policy that judges outcomes (retry) can then use functions made once, not a closure per call, to hold
 * the call while the attempt is in flight: a closure pair and its context are a few hundred bytes per call, on
 * every call in flight.
 *
 * Only outcomes of the transport are marked. A policy that fails a call on its own (an open breaker) does it with
 * an error that carries no call: such failures are final.
 */
// Errors carry their call in a WeakMap, not in a field, though a field would cost no less: on this machine both are
// lost in the noise of making the error (its stack trace: ~5 µs), and failures are off the hot path. What decides is
// where the error goes: Fastify logs it through pino's error serializer, which copies every enumerable property, and
// `util.inspect` shows symbol-keyed ones, so a field would put the call's header object (`authorization`) in the logs.
const kFailures = new WeakMap<object, CallContext>()

/** Marks an attempt's response with its call. */
export function markResponse (res: HttpResponse, ctx: CallContext): HttpResponse {
  res.call = ctx.call
  return res
}

/** Marks an attempt's error with its call (errors of this library are objects made for one call). */
export function markFailure<E extends object> (err: E, ctx: CallContext): E {
  kFailures.set(err, ctx.call)
  return err
}

/** The call of a response the transport settled an attempt with. */
export function callOfResponse (res: HttpResponse): CallContext | undefined {
  // The response knows its call by a narrow type (it sits below the pipeline's types); `markResponse` set it.
  return res.call as CallContext | undefined
}

/** The call of an error the transport failed an attempt with. */
export function callOfFailure (err: unknown): CallContext | undefined {
  return typeof err === 'object' && err !== null ? kFailures.get(err) : undefined
}

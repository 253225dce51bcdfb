import type { CallSignal } from '../call-signal'
import { ClientClosedError, describe, stamp } from '../errors'
import type { CallContext } from './types'

/** How much of a backoff delay is randomised. */
export type Jitter = 'full' | 'equal' | 'none'

/**
 * The delay before retry number `retry` (1-based): `baseDelay * factor^(retry - 1)`, capped at `maxDelay`, then
 * jittered. `'full'` draws uniformly in `[0, delay]` (AWS's "full jitter": the least synchronised retries from many
 * clients), `'equal'` in `[delay / 2, delay]`, `'none'` keeps it.
 */
export function backoffDelay (retry: number, baseDelay: number, factor: number, maxDelay: number, jitter: Jitter): number {
  const delay = Math.min(maxDelay, baseDelay * factor ** (retry - 1))
  switch (jitter) {
    case 'full': return Math.round(Math.random() * delay)
    case 'equal': return Math.round(delay / 2 + Math.random() * delay / 2)
    default: return Math.round(delay)
  }
}

/** The error of a call whose wait (retry backoff, bulkhead queue, rate limit) was cut short by the service closing. */
export function closedWhileWaiting (ctx: CallContext): Error {
  const target = { service: ctx.service.name, method: ctx.method, path: ctx.path }
  const e = new ClientClosedError(`${describe(target)}: service client closed while the call waited (closeTimeout passed)`,
    { cause: ctx.service.closing?.reason })
  return stamp(e, target)
}

/**
 * Waits `ms` milliseconds for a call, or rejects as soon as its signal aborts (with the signal's reason) or its
 * service's `closing` signal does (`ClientClosedError`); the timer is then cleared: a call that ends leaves
 * nothing behind.
 */
export function sleep (ms: number, ctx: CallContext): Promise<void> {
  const signal = ctx.signal
  const closing = ctx.service.closing
  if (signal?.aborted === true) return Promise.reject(signal.reason)
  if (closing?.aborted === true) return Promise.reject(closedWhileWaiting(ctx))
  return new Promise((resolve, reject) => {
    const stop = (): void => {
      clearTimeout(timer)
      signal?.removeListener('abort', onAbort)
      closing?.removeListener('abort', onClosing)
    }
    const onAbort = (): void => {
      stop()
      reject((signal as CallSignal).reason)
    }
    const onClosing = (): void => {
      stop()
      reject(closedWhileWaiting(ctx))
    }
    const timer = setTimeout(() => {
      stop()
      resolve()
    }, ms)
    signal?.once('abort', onAbort)
    closing?.once('abort', onClosing)
  })
}

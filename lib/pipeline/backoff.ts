import type { CallSignal } from '../call-signal'

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

/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as `signal` aborts (the timer is cleared:
 * an aborted call leaves nothing behind).
 */
export function sleep (ms: number, signal: CallSignal | undefined): Promise<void> {
  if (signal === undefined) return new Promise((resolve) => setTimeout(resolve, ms))
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeListener('abort', onAbort)
      resolve()
    }, ms)
    signal.once('abort', onAbort)
  })
}

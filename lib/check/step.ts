/**
 * What every probe shares: a bound on its time, its duration, and the words for a failure. Each probe owns what it
 * opened and destroys it when the bound passes, so nothing it started outlives the check.
 */
import type { CheckStatus, CheckStep, CheckStepName } from './types'

/** Thrown by `bounded()` when the time is up. */
export class StepTimeout extends Error {
  readonly code = 'ETIMEDOUT'
}

/**
 * Settles as `run` does, or rejects with `StepTimeout` after `timeout` ms; `onTimeout` then releases what `run` holds
 * (a socket, a pool). `run` gets the signal that aborts at the bound.
 */
export async function bounded<T> (timeout: number, what: string, run: (signal: AbortSignal) => Promise<T>, onTimeout?: () => void): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const err = new StepTimeout(`${what} timed out after ${timeout} ms`)
      controller.abort(err)
      onTimeout?.()
      reject(err)
    }, timeout)
  })
  try {
    return await Promise.race([run(controller.signal), expired])
  } finally {
    clearTimeout(timer)
  }
}

/** A step's record, with its duration since `start` (a `performance.now()`). */
export function stepOf (step: CheckStepName, target: string, status: CheckStatus, result: string, start: number,
  extra: Partial<CheckStep> = {}): CheckStep {
  // A certificate's names and a resolver's words come from outside: no control character reaches a terminal.
  return { step, target: printable(target), status, result: printable(result), ms: Math.round(performance.now() - start), ...extra }
}

function printable (text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, '?')
}

/** The errno (`ECONNREFUSED`) or library code of an error, when it has one. */
export function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code !== '' ? code : undefined
}

/** `address:port`, bracketed for IPv6. */
export function hostPort (address: string, port: number | string): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`
}

/** The port of a URL, its scheme's default when it names none. */
export function portOf (url: URL): number {
  return url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
}

/** The host of a URL without IPv6 brackets: what DNS and `net.connect` take. */
export function hostOf (url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1')
}

import { isPlainObject, object, variants } from '../checkers'
import { ms, positiveMs } from '../values'
import { defineGroup, type Spec } from './group'

/** Timeouts of one call, in milliseconds. A number given where a `TimeoutOptions` is accepted means `total`. */
export interface TimeoutOptions {
  /**
   * Time to open a TCP (and TLS) connection.
   * @default 5000
   */
  connect?: number
  /**
   * Time from sending the request to receiving the response headers (time to first byte), per attempt. Informational
   * (1xx) answers do not extend it past `headers` ms after the first of them.
   * @default 30000
   */
  headers?: number
  /**
   * Longest idle gap between two chunks of the response body. A body handed to the caller (`get()`, `stream()`) that
   * nobody starts to read within this time is discarded, with a warning, so it cannot hold its connection.
   * @default 30000
   */
  body?: number
  /**
   * Whole logical call: every attempt and every backoff sleep. `0` turns it off.
   * Off by default: each attempt is bounded by `connect`, `headers` and `body`, and retries by `retry`.
   * @default 0
   */
  total?: number
  /**
   * One attempt, its headers and its body: past it the attempt's request is aborted and the attempt fails with a
   * `TimeoutError` of phase `'attempt'`, which is retried like a headers timeout. `0` turns it off.
   * @default 0
   */
  attempt?: number
}

export const timeoutOptions = defineGroup({
  connect: { check: positiveMs, default: 5000 },
  headers: { check: positiveMs, default: 30000 },
  body: { check: positiveMs, default: 30000 },
  total: { check: ms, default: 0 },
  attempt: { check: ms, default: 0 }
} satisfies Spec<TimeoutOptions>)

/** The service's `timeout` option: an object, or a number that is `total`. */
export const timeoutOption = variants([(v) => typeof v === 'number', ms], [isPlainObject, timeoutOptions.check])

/**
 * A call's own `timeout` (a number is `total`). `connect` is the pool's, shared by every call of the service, so a
 * call cannot set it.
 */
const callTimeout = variants([(v) => typeof v === 'number', ms], [isPlainObject, object(
  { headers: positiveMs, body: positiveMs, total: ms, attempt: ms },
  { hints: { connect: 'the connect timeout belongs to the service\'s pool: set it in the service options (timeout.connect)' } })])

/** Checks a call's `timeout` option; throws `InvalidOptionsError` naming the key. */
export function checkCallTimeout (value: unknown): void {
  callTimeout(value, 'timeout')
}

/** Timeouts after resolution: `attempt` is present only when set (absent or 0: no attempt timeout). */
export type ResolvedTimeout = Required<Omit<TimeoutOptions, 'attempt'>> & Pick<TimeoutOptions, 'attempt'>

// `attempt` is left out of what a service starts from: its default, 0, means none, and a service that sets none
// shows none (the attempt-timeout policy reads an absent one as 0).
const { attempt: kAttemptOff, ...kResolvedDefaults } = timeoutOptions.defaults

/** The built-in timeouts a service starts from. */
export const resolvedTimeoutDefaults: Readonly<ResolvedTimeout> = Object.freeze(kResolvedDefaults)

/** A service's timeouts: its own (already expanded to an object, `undefined` values dropped) over the defaults. */
export function resolveTimeout (value: TimeoutOptions | undefined): ResolvedTimeout {
  return { ...resolvedTimeoutDefaults, ...value }
}

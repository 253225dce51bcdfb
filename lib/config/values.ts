/**
 * Checkers of the values several option groups take (durations, header names, PEM), and how header names are
 * normalised once validated. A checker used by one group only lives in that group's file.
 */
import { fail, falseOr, isString, number, rule, type Checker } from './checkers'

/** The longest wait Node's timers take: a longer `setTimeout` fires after 1 ms instead. */
export const kMaxTimerMs = 2_147_483_647

/** Milliseconds that pass `test`, at most `kMaxTimerMs` (a longer one is refused with its own message). */
function millis (expected: string, test: (n: number) => boolean): Checker {
  const base = number(expected, test)
  return Object.assign((value: unknown, key: string) => {
    base(value, key)
    if ((value as number) > kMaxTimerMs) fail(key, `at most ${kMaxTimerMs} ms (about 24.8 days: Node's timers wait no longer)`, value)
  }, { expected })
}

export const positiveMs = millis('a positive number of milliseconds', (n) => n > 0)
export const ms = millis('a number of milliseconds >= 0', (n) => n >= 0)
/** A span only used in arithmetic (a window, a TTL), never a timer's delay: any length. */
export const positiveSpan = number('a positive number of milliseconds', (n) => n > 0)
export const positive = number('a positive number', (n) => n > 0)
export const string = rule('a non-empty string', (v) => isString(v) && v !== '')
export const fn = rule('a function', (v) => typeof v === 'function')

const kToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** CR, LF and NUL end or corrupt a header line. */
export const kBadHeaderValue = /[\r\n\0]/
export const headerName = rule('a header name (an HTTP token)', (v) => isString(v) && kToken.test(v))
export const headerValue = rule('a string without CR, LF or NUL', (v) => isString(v) && !kBadHeaderValue.test(v))
/** A header name, or `false` for none. */
export const headerNameOrFalse = falseOr(headerName, isString)
export const pem = rule('PEM text, a file path or a Buffer', (v) => (isString(v) && v !== '') || Buffer.isBuffer(v))

/** Header names are case-insensitive; resolved options hold them lower-case, so calls compare them cheaply. */
export function lowerKeys (headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v
  return out
}

export function lowerOrFalse (value: string | false): string | false {
  return value === false ? false : value.toLowerCase()
}

/**
 * Validation: the checkers (checkers.ts, values.ts) and each group's rows (options/*.ts) do the work; this module is
 * the entry point callers import and re-exports what they use.
 */
import { commonServiceOptions } from './options/common'
import { httpServicesOptions, type HttpServicesOptions } from './options/registry'
import { serviceOptions } from './options/service'

export * from './checkers'
export * from './values'
export { basePathOf } from './options/service'
export { checkCallTimeout } from './options/timeout'

/** Checkers of `CommonServiceOptions`, the keys allowed both in `defaults` and per service. */
export const commonServiceSpec = commonServiceOptions.checks

/** Checkers of `ServiceOptions`. */
export const serviceSpec = serviceOptions.checks

/**
 * Validates plugin options (already merged with the config file). Every key is checked and unknown keys are
 * refused; the first problem throws one `InvalidOptionsError` whose `key` is the dotted path of the option and
 * whose message reads `<key>: expected <what>, got <value>`.
 */
export function validateOptions (value: unknown): asserts value is HttpServicesOptions {
  httpServicesOptions.check(value, '')
}

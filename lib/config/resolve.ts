import type { HttpServicesOptions } from './types'
import type { ResolvedOptions } from './resolved'
import { loadConfigFile } from './load-file'
import { adaptiveRateOptions } from './options/adaptive-rate'
import { breakerOptions } from './options/breaker'
import { bulkheadOptions } from './options/bulkhead'
import { kAcceptEncoding } from './options/common'
import { deadlineHeadersOptions } from './options/deadline-headers'
import { dnsOptions } from './options/dns'
import { hedgeOptions } from './options/hedge'
import { rateLimitOptions } from './options/rate-limit'
import { httpServicesOptions, resolveRegistry } from './options/registry'
import { retryOptions } from './options/retry'
import { retryBudgetOptions } from './options/retry-budget'
import { serviceOptions } from './options/service'
import { resolvedTimeoutDefaults } from './options/timeout'
import { tlsOptions } from './options/tls'
import { isPlainObject, validateOptions } from './validate'

export { resolveRetry } from './options/retry'

/**
 * Every group's built-in defaults in one object, for code that reads one of them by name
 * (`builtInDefaults.retryBudget`, `builtInDefaults.acceptEncoding`). The groups' own `defaults` are the source.
 */
export const builtInDefaults = Object.freeze({
  ...httpServicesOptions.defaults,
  ...serviceOptions.defaults,
  acceptEncoding: kAcceptEncoding,
  timeout: resolvedTimeoutDefaults,
  tls: tlsOptions.defaults,
  dns: dnsOptions.defaults,
  retry: retryOptions.defaults,
  retryBudget: retryBudgetOptions.defaults,
  breaker: breakerOptions.defaults,
  bulkhead: bulkheadOptions.defaults,
  rateLimit: rateLimitOptions.defaults,
  adaptive: adaptiveRateOptions.defaults,
  hedge: hedgeOptions.defaults,
  deadlineHeaders: deadlineHeadersOptions.defaults
})

/**
 * Deep-merges `override` onto `base` without touching either: plain objects merge key by key, everything else
 * (arrays, functions, Buffers, class instances such as a dispatcher) replaces; `undefined` in `override` keeps
 * the base value.
 */
export function mergeOptions<T> (base: T, override: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(override)) return (override === undefined ? base : override) as T
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(override)) {
    // An own `__proto__` key (from JSON.parse) is kept as a key, so validation names it instead of it replacing
    // `out`'s prototype.
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    else out[k] = mergeOptions(out[k], v)
  }
  return out as T
}

/**
 * Turns plugin options into the resolved option set: loads `configFile` (inline options win over it),
 * validates, merges `defaults` under every service and fills the built-in defaults.
 *
 * @throws InvalidOptionsError naming the dotted key of the first bad option.
 */
export function resolveOptions (options: HttpServicesOptions = {}): ResolvedOptions {
  let merged: unknown = options
  const configFile: unknown = isPlainObject(options) ? options.configFile : undefined
  if (configFile !== undefined) {
    validateOptions({ configFile })
    merged = mergeOptions(loadConfigFile(configFile as string), options)
  }
  validateOptions(merged)
  return resolveRegistry(merged)
}

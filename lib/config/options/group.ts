/**
 * One definition per option group. Each file of this folder holds one group: its public type (JSDoc with
 * `@default`, which reaches the `.d.ts` and the editor), its rows (a checker and a built-in default per key), its
 * resolved type and its resolver. Validation, defaults and resolution all read the rows, so nothing repeats them:
 *
 * ```ts
 * export interface CacheOptions {
 *   ttl?: number   // with its JSDoc: what it is for, and `@default 60000`
 * }
 * export const cacheOptions = defineGroup({
 *   ttl: { check: positiveMs, default: 60000 }
 * } satisfies Spec<CacheOptions>)
 * ```
 *
 * `satisfies Spec<T>` makes a key of `T` without a row, a row without a checker or a `default` (`undefined` when the
 * key has none), a default of the wrong type and a row for a key `T` lacks compile errors. The group value is named
 * like its type in lower camel case (`CacheOptions` -> `cacheOptions`): test/config/option-sources.test.ts pairs them
 * that way to compare every `@default` tag with the rows' defaults and with the README's option tables.
 *
 * A new module (auth, telemetry, cache, webhooks) plugs its group in where its key sits:
 * - a service option: add the key (with JSDoc and `@default`) to `CommonServiceOptions` in common.ts; the compiler
 *   then asks for its row there (usually `booleanOr(cacheOptions.check)` with `default: false`), for its field in
 *   `ResolvedService` and for its value in `resolveService` (service.ts). Add it to `kMergedOneLevel` there when
 *   `defaults` and a service should merge its keys.
 * - a registry option (webhooks): the same with `HttpServicesOptions` and `ResolvedOptions` in registry.ts.
 * Rows keep the order messages list keys in (`unknown option (expected one of: …)`).
 */
import { object, type Checker, type ObjectRules } from '../checkers'

/** One option: how its value is checked and what it is when left out (`undefined`: no built-in default). */
export interface Row<V> {
  readonly check: Checker
  readonly default: V | undefined
}

/** A row for every key of the options `T`, optional keys included. */
export type Spec<T> = { readonly [K in keyof T]-?: Row<Exclude<T[K], undefined>> }

/** The keys of rows `S` that have a default, with its type. */
export type DefaultsOf<S> = {
  readonly [K in keyof S as S[K] extends Row<unknown> ? (S[K]['default'] extends undefined ? never : K) : never]:
  S[K] extends Row<unknown> ? Exclude<S[K]['default'], undefined> : never
}

/** A group of options built from its rows. */
export interface OptionGroup<S> {
  readonly rows: S
  /** The checker of each key, in row order. */
  readonly checks: Readonly<Record<string, Checker>>
  /** Checks a whole object of these options: unknown keys refused, `undefined` values taken as absent. */
  readonly check: Checker
  /** The built-in defaults; keys without one are left out, so the object can be spread under a value. */
  readonly defaults: DefaultsOf<S>
}

/** The group of `rows`; `rules` are the object's cross-key rules (required keys, hints, refinements). */
export function defineGroup<S extends Record<string, Row<unknown>>> (rows: S, rules?: ObjectRules): OptionGroup<S> {
  const checks: Record<string, Checker> = {}
  const defaults: Record<string, unknown> = {}
  for (const [key, row] of Object.entries(rows)) {
    checks[key] = row.check
    if (row.default !== undefined) defaults[key] = row.default
  }
  return Object.freeze({
    rows,
    checks: Object.freeze(checks),
    check: object(checks, rules),
    defaults: Object.freeze(defaults) as DefaultsOf<S>
  })
}

/** `undefined` when off (`undefined` or `false`); otherwise the value (`true`: none of its own) over `defaults`. */
export function enabled<V extends object, D extends object> (value: V | boolean | undefined, defaults: D): (D & V) | undefined {
  return value === undefined || value === false ? undefined : { ...defaults, ...(value === true ? {} : value) } as D & V
}

/** The keys of `value` whose value is not `undefined`: what an option object sets. */
export function definedOnly<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

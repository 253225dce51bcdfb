/**
 * The live services page (`statusPage`, a plugin option): where it is served and the route options its three routes
 * share (lib/status/routes.ts). Plugin only: `createHttpServices` takes and ignores it, as it does `underPressure`.
 */
import type { RouteShorthandOptions } from 'fastify'
import { invalid, isPlainObject, isString, rule } from '../checkers'
import { defineGroup, definedOnly, enabled, type Spec } from './group'

/** Options of the live services page (`statusPage`). */
export interface StatusPageOptions {
  /**
   * The page's path; the JSON is served at `{path}.json` and the server-sent events at `{path}/events`.
   * @default '/_services'
   */
  path?: string
  /**
   * Fastify route options spread into each of the three routes: an `onRequest` hook that checks a token guards them
   * all (`config`, `logLevel`, `constraints` …). `url`, `method` and `handler` are the page's own.
   * @default {}
   */
  routeOpts?: RouteShorthandOptions
}

// Letters, digits and `-._~/` only: no route parameter (`:id`), wildcard or query; no trailing slash, so `.json` and
// `/events` append to it cleanly.
const kPath = /^(\/[A-Za-z0-9._~-]+)+$/
const kOwnKeys = ['url', 'method', 'handler', 'path']

const pagePath = rule("a path such as '/_services' (segments of letters, digits, '-', '.', '_' or '~', no trailing slash)",
  (v) => isString(v) && kPath.test(v))

const routeOpts = Object.assign((value: unknown, key: string) => {
  rule('an object of Fastify route options', isPlainObject)(value, key)
  for (const own of kOwnKeys) {
    if ((value as Record<string, unknown>)[own] !== undefined) throw invalid(`${key}.${own}`, 'set by the status page itself: leave it out')
  }
}, { expected: 'an object of Fastify route options' })

export const statusPageOptions = defineGroup({
  path: { check: pagePath, default: '/_services' },
  routeOpts: { check: routeOpts, default: {} }
} satisfies Spec<StatusPageOptions>)

/** The page after resolution; `undefined` when it is off. */
export type ResolvedStatusPage = Required<StatusPageOptions>

/** `statusPage` resolved: `undefined` when off, else its path and route options. */
export function resolveStatusPage (value: boolean | StatusPageOptions | undefined): ResolvedStatusPage | undefined {
  // `{ path: undefined }` (a value left unset in code) keeps the default path.
  return enabled(typeof value === 'object' ? definedOnly(value) : value, statusPageOptions.defaults) as ResolvedStatusPage | undefined
}

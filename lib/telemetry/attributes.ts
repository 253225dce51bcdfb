/**
 * The OpenTelemetry HTTP client semantic conventions (stable attributes), computed from the diagnostics messages:
 * method normalisation, the redacted `url.full`, `error.type`, the span name. Messages already redact query values
 * (`?token=***`); origins never carry userinfo (`baseUrl` with one is refused), so `url.full` holds no secret.
 */

/** The attribute naming the service of a span or a measurement (README, "Telemetry"). */
export const kServiceAttribute = 'http_services.service'

/** Methods the conventions know; any other is `_OTHER`, its own name in `http.request.method_original`. */
const kKnownMethods = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'QUERY', 'TRACE'])

/** `http.request.method`: the method, or `_OTHER` for one the conventions do not know. */
export function methodAttribute (method: string): string {
  return kKnownMethods.has(method) ? method : '_OTHER'
}

/** A `:param` placeholder, as the client fills them from `params` (lib/request-target.ts). */
const kParam = /:[A-Za-z_]/

/**
 * The route as `url.template`, when the call used a template: it holds a placeholder and the call's path
 * (`callPath`: base path, filled route, redacted query) does not end with it, so `params` filled it in. `undefined`
 * for a literal path, colons and all.
 */
export function templateOf (route: string, callPath: string): string | undefined {
  if (!kParam.test(route)) return undefined
  const q = callPath.indexOf('?')
  return (q === -1 ? callPath : callPath.slice(0, q)).endsWith(route) ? undefined : route
}

/** The span name: `{METHOD}` or `{METHOD} {template}` (`HTTP` for an unknown method), never the raw path. */
export function spanName (method: string, template: string | undefined): string {
  const m = kKnownMethods.has(method) ? method : 'HTTP'
  return template === undefined ? m : `${m} ${template}`
}

/** Where an origin points: scheme, host (without IPv6 brackets) and port, the scheme's default filled in. */
export interface OriginParts {
  scheme: string
  address: string
  port: number
}

const kOrigins = new Map<string, OriginParts | null>()

/** The parts of an origin (`http://10.0.0.7:8080`), parsed once per origin; `undefined` when it does not parse. */
export function originParts (origin: string): OriginParts | undefined {
  let parts = kOrigins.get(origin)
  if (parts === undefined) {
    try {
      const url = new URL(origin)
      const scheme = url.protocol.slice(0, -1)
      const address = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
      parts = { scheme, address, port: url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port) }
    } catch {
      parts = null
    }
    // Origins come from the configuration: a handful per process, so this cache stays small.
    if (kOrigins.size < 1000) kOrigins.set(origin, parts)
  }
  return parts ?? undefined
}

/**
 * `url.full`: the origin and the path sent. The path comes from a message, its query values already redacted;
 * userinfo is stripped should an origin carry one.
 */
export function fullUrl (origin: string, path: string): string {
  const at = origin.indexOf('@')
  const clean = at === -1 ? origin : origin.slice(0, origin.indexOf('//') + 2) + origin.slice(at + 1)
  return clean + path
}

/**
 * `error.type` of a failure: the low-cardinality code of the error (a socket's `ECONNRESET` rather than the
 * library's `HTTP_SERVICES_ERR_CONNECTION`; a timeout's phase), else its name, else `_OTHER`.
 */
export function errorType (error: unknown): string {
  if (typeof error !== 'object' || error === null) return '_OTHER'
  const e = error as { errno?: unknown, code?: unknown, name?: unknown, phase?: unknown }
  if (typeof e.errno === 'string' && e.errno !== '') return e.errno
  if (e.code === 'HTTP_SERVICES_ERR_TIMEOUT' && typeof e.phase === 'string') return `timeout_${e.phase}`
  if (typeof e.code === 'string' && e.code !== '') return e.code
  if (typeof e.name === 'string' && e.name !== '') return e.name
  return '_OTHER'
}

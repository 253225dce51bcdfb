/**
 * `auth`: the credentials a service's calls carry (bearer, API key, basic, the inbound request's own, OAuth2 client
 * credentials). Exactly one scheme per object. Every secret is checked without being echoed (`../checkers`:
 * `kSecretKey`) and, once resolved, kept in properties that are not enumerable, so a logged or snapshotted option set
 * never shows it.
 */
import { arrayOf, fail, invalid, isPlainObject, isString, oneOf, record, rule, variants, type Checker } from '../checkers'
import { headerName, kBadHeaderValue, ms, string } from '../values'
import { defineGroup, type Spec } from './group'

/** An API key sent in a header (`header`) or a query parameter (`query`), never both. */
export interface ApiKeyOptions {
  /** The key. A secret: never shown in logs, errors or messages. */
  value: string
  /**
   * The header that carries the key (when `query` is not set).
   * @default 'x-api-key'
   */
  header?: string
  /** The query parameter that carries the key, instead of a header. */
  query?: string
}

/** HTTP basic authentication (RFC 7617): `Authorization: Basic base64(username:password)`, computed once. */
export interface BasicAuthOptions {
  /** The user name; a `:` cannot be sent in it (RFC 7617). */
  username: string
  /** The password. A secret: never shown in logs, errors or messages. */
  password: string
}

/** How an OAuth2 client authenticates to its token endpoint: client_secret_basic or client_secret_post. */
export type OAuth2Method = 'basic' | 'post'

/** OAuth2 client credentials (RFC 6749 §4.4). */
export interface OAuth2Options {
  /** The token endpoint: an http(s) URL, or with `tokenService` a path on that service. */
  tokenUrl: string
  clientId: string
  /** A secret: never shown in logs, errors or messages. */
  clientSecret: string
  /** Scopes asked for: a space-separated string or a list. */
  scope?: string | string[]
  /** `audience` parameter (Auth0, Okta …). */
  audience?: string
  /** `resource` parameter (RFC 8707). */
  resource?: string
  /**
   * How the client authenticates to the token endpoint: `basic` (client_secret_basic, id and secret form-encoded
   * then base64) or `post` (client_secret_post, both in the form).
   * @default 'basic'
   */
  authMethod?: OAuth2Method
  /**
   * A token is renewed this many milliseconds before it expires.
   * @default 60000
   */
  refreshBefore?: number
  /** Sends the token request through this other service (its TLS, proxy, pool and timeouts). */
  tokenService?: string
  /** More form parameters for the token request. */
  extraParams?: Record<string, string>
}

/**
 * The credentials a service's calls carry: exactly one of these keys. A call's `token` and `auth: false` override it
 * (priority: call `token` > call `auth` > service `auth` > `defaults.auth`).
 */
export interface AuthOptions {
  /** `Authorization: Bearer <token>`: a fixed token (a secret), or a function called before each attempt. */
  bearer?: string | (() => string | Promise<string>)
  /** An API key in a header or the query. */
  apiKey?: ApiKeyOptions
  /** HTTP basic authentication. */
  basic?: BasicAuthOptions
  /**
   * Forward the inbound request's `Authorization` header (`true`), or the inbound header of this name under the same
   * name, to this service only. Calls made outside an inbound request send none.
   */
  forward?: true | string
  /** OAuth2 client credentials. */
  oauth2?: OAuth2Options
}

/** A secret string: non-empty, no CR, LF or NUL (a header would be split), never shown. */
const secret = Object.assign((value: unknown, key: string) => {
  if (!isString(value) || value === '' || kBadHeaderValue.test(value)) fail(key, secret.expected, isString(value) ? '***' : value)
  // undici refuses these in a header value: found at start-up, not on the first call.
  if (kControl.test(value)) fail(key, 'a string without control characters (tab aside)', '***')
}, { expected: 'a non-empty string without CR, LF or NUL' })

/** Control characters other than tab (HTAB is allowed in a header value, RFC 9110 §5.5). */
const kControl = /[\x00-\x08\x0a-\x1f\x7f]/

const nonEmptyText = rule('a non-empty string without CR, LF or NUL', (v) => isString(v) && v !== '' && !kBadHeaderValue.test(v))

/** Headers that route or frame a request, or describe the inbound connection: never credentials to copy or set. */
const kNotAuthHeaders = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'proxy-connection', 'keep-alive',
  'upgrade', 'expect', 'te', 'trailer', 'content-type', 'cookie'])

const authHeaderName = Object.assign((value: unknown, key: string) => {
  headerName(value, key)
  if (kNotAuthHeaders.has((value as string).toLowerCase())) {
    fail(key, `a header name other than ${[...kNotAuthHeaders].join(', ')}`, value)
  }
}, { expected: headerName.expected })

export const apiKeyOptions = defineGroup({
  value: { check: secret, default: undefined },
  header: { check: authHeaderName, default: 'x-api-key' },
  query: { check: nonEmptyText, default: undefined }
} satisfies Spec<ApiKeyOptions>, {
  required: ['value'],
  refine (value, key) {
    if (value.header !== undefined && value.query !== undefined) {
      throw invalid(`${key}.query`, 'give the key either in a header or in the query, not both')
    }
  }
})

export const basicAuthOptions = defineGroup({
  username: {
    check: rule('a non-empty string without ":", CR, LF or NUL', (v) => isString(v) && v !== '' && !v.includes(':') && !kBadHeaderValue.test(v)),
    default: undefined
  },
  password: {
    check: Object.assign((value: unknown, key: string) => {
      if (!isString(value) || kBadHeaderValue.test(value)) fail(key, 'a string without CR, LF or NUL', isString(value) ? '***' : value)
    }, { expected: 'a string without CR, LF or NUL' }),
    default: undefined
  }
} satisfies Spec<BasicAuthOptions>, { required: ['username', 'password'] })

/** `tokenUrl`: an http(s) URL, or a path when the request goes through `tokenService`. */
function tokenUrlOf (value: Record<string, unknown>, key: string): void {
  const url = value.tokenUrl
  const at = `${key}.tokenUrl`
  if (value.tokenService !== undefined) {
    if (!isString(url) || !url.startsWith('/') || url.startsWith('//')) fail(at, 'a path starting with "/" (the token request goes through tokenService)', url)
    return
  }
  let parsed: URL | undefined
  try { parsed = new URL(url as string) } catch {}
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) fail(at, 'an http(s) URL', url)
  if (parsed.username !== '' || parsed.password !== '') fail(at, 'an http(s) URL without credentials (use clientId and clientSecret)', '***')
  if (parsed.hash !== '') fail(at, 'an http(s) URL without fragment', url)
}

export const oAuth2Options = defineGroup({
  tokenUrl: { check: rule('an http(s) URL, or a path with tokenService', isString), default: undefined },
  clientId: { check: nonEmptyText, default: undefined },
  clientSecret: { check: secret, default: undefined },
  scope: {
    check: variants([isString, nonEmptyText], [Array.isArray, arrayOf(nonEmptyText, 'a non-empty list of scopes', 1)]),
    default: undefined
  },
  audience: { check: nonEmptyText, default: undefined },
  resource: { check: nonEmptyText, default: undefined },
  authMethod: { check: oneOf('basic', 'post'), default: 'basic' },
  refreshBefore: { check: ms, default: 60000 },
  tokenService: { check: string, default: undefined },
  extraParams: { check: record(rule('a parameter name', (v) => isString(v) && v !== ''), rule('a string', isString)), default: undefined }
} satisfies Spec<OAuth2Options>, {
  required: ['tokenUrl', 'clientId', 'clientSecret'],
  refine: tokenUrlOf
})

const kSchemes = ['bearer', 'apiKey', 'basic', 'forward', 'oauth2']

export const authOptions = defineGroup({
  bearer: {
    check: variants([(v) => typeof v === 'function', rule('a function', () => true)], [() => true, secret]),
    default: undefined
  },
  apiKey: { check: apiKeyOptions.check, default: undefined },
  basic: { check: basicAuthOptions.check, default: undefined },
  forward: {
    check: variants([(v) => v === true, rule('true', () => true)], [isString, authHeaderName]),
    default: undefined
  },
  oauth2: { check: oAuth2Options.check, default: undefined }
} satisfies Spec<AuthOptions>, {
  refine (value, key) {
    const given = kSchemes.filter((k) => value[k] !== undefined)
    if (given.length !== 1) {
      throw invalid(key, `expected exactly one of ${kSchemes.join(', ')}, got ${given.length === 0 ? 'none' : given.join(' and ')}`)
    }
  }
})

/** The service's `auth` option: `false` (none: turns off `defaults.auth`) or one scheme. */
export const authOption: Checker = variants([(v) => v === false, rule('false', () => true)], [isPlainObject, authOptions.check])

/** `auth` after resolution. The secrets (`value`, `bearer`) are not enumerable. */
export interface ResolvedAuth {
  /** The scheme, as logs and stats may show it. */
  readonly scheme: 'bearer' | 'apiKey' | 'basic' | 'forward' | 'oauth2'
  /** Lower-case header the credential goes in; `undefined` for an API key in the query. */
  readonly header: string | undefined
  /** The query parameter of an API key sent in the query. */
  readonly query: string | undefined
  /** The fixed header value (`Bearer …`, `Basic …`, the key) or query value; `undefined` for a bearer function and `forward`. */
  readonly value: string | undefined
  /** The bearer function, called before each attempt. */
  readonly bearer: (() => string | Promise<string>) | undefined
  /** OAuth2 client credentials, every default filled in. Not enumerable (it holds the client secret). */
  readonly oauth2: ResolvedOAuth2 | undefined
}

/** `auth.oauth2` after resolution: `scope` joined with spaces, defaults filled in. */
export interface ResolvedOAuth2 {
  readonly tokenUrl: string
  readonly clientId: string
  readonly clientSecret: string
  readonly scope: string | undefined
  readonly audience: string | undefined
  readonly resource: string | undefined
  readonly authMethod: OAuth2Method
  readonly refreshBefore: number
  readonly tokenService: string | undefined
  readonly extraParams: Record<string, string>
}

/** A service's `auth` (validated), resolved once at start-up; `key` is its dotted key, for messages. */
export function resolveAuth (auth: AuthOptions | false | undefined, key: string): ResolvedAuth | undefined {
  if (auth === undefined || auth === false) return undefined
  let out: { scheme: ResolvedAuth['scheme'], header?: string, query?: string }
  let value: string | undefined
  let bearer: ResolvedAuth['bearer']
  let oauth2: ResolvedOAuth2 | undefined
  if (auth.bearer !== undefined) {
    out = { scheme: 'bearer', header: 'authorization' }
    if (typeof auth.bearer === 'function') bearer = auth.bearer
    else value = `Bearer ${auth.bearer}`
  } else if (auth.apiKey !== undefined) {
    const { query, header } = auth.apiKey
    out = query !== undefined
      ? { scheme: 'apiKey', query }
      : { scheme: 'apiKey', header: (header ?? apiKeyOptions.defaults.header).toLowerCase() }
    value = auth.apiKey.value
  } else if (auth.basic !== undefined) {
    out = { scheme: 'basic', header: 'authorization' }
    value = `Basic ${Buffer.from(`${auth.basic.username}:${auth.basic.password}`, 'utf8').toString('base64')}`
  } else if (auth.forward !== undefined) {
    out = { scheme: 'forward', header: auth.forward === true ? 'authorization' : auth.forward.toLowerCase() }
  } else {
    const o = auth.oauth2 as OAuth2Options
    const d = oAuth2Options.defaults
    out = { scheme: 'oauth2', header: 'authorization' }
    oauth2 = {
      tokenUrl: o.tokenUrl,
      clientId: o.clientId,
      clientSecret: o.clientSecret,
      scope: Array.isArray(o.scope) ? o.scope.join(' ') : o.scope,
      audience: o.audience,
      resource: o.resource,
      authMethod: o.authMethod ?? d.authMethod,
      refreshBefore: o.refreshBefore ?? d.refreshBefore,
      tokenService: o.tokenService,
      extraParams: { ...o.extraParams }
    }
  }
  const resolved = { scheme: out.scheme, header: out.header, query: out.query }
  Object.defineProperties(resolved, { value: { value }, bearer: { value: bearer }, oauth2: { value: oauth2 } })
  return resolved as ResolvedAuth
}

/**
 * The header a service's scheme fixes at start-up (`bearer` string, `basic`, `apiKey` in a header): it joins the
 * service's own headers once, so an attempt pays nothing for it. `undefined` for a bearer function, OAuth2, `forward`
 * and an API key in the query, which the `auth` policy adds per attempt (or the inbound request gives).
 */
export function fixedAuthHeader (auth: ResolvedAuth | undefined): [name: string, value: string] | undefined {
  if (auth === undefined || auth.value === undefined || auth.header === undefined) return undefined
  return [auth.header, auth.value]
}

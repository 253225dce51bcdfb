import { fail, falseBranch, invalid, isPlainObject, isString, record, variants } from '../checkers'
import { headerName, kBadHeaderValue, lowerKeys } from '../values'
import { defineGroup, type Spec } from './group'
import { resolveTls, tlsOptions, type ResolvedTls, type TlsOptions } from './tls'

/** An HTTP proxy in object form (see `proxy`). */
export interface ProxyOptions {
  /**
   * The proxy: `http://[user:pass@]host:port` or `https://…` (credentials in the URL are sent as
   * `Proxy-Authorization: Basic`), or `'env'` for `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`.
   */
  uri: string
  /** Headers sent to the proxy with each CONNECT and each forwarded request. Their values are treated as secrets. */
  headers?: Record<string, string>
  /** TLS settings for an https proxy (the upstream's are the service's `tls`). */
  tls?: TlsOptions
  /** The whole `Proxy-Authorization` value (e.g. `'Bearer …'`), instead of credentials in `uri`. A secret. */
  token?: string
}

// Proxy URLs, tokens and headers carry credentials: a message about them never shows them.
const redactUserinfo = (v: string): string => v.replace(/\/\/[^/?#]*@/, '//***@')

const proxyUri = Object.assign((value: unknown, key: string) => {
  if (value === 'env') return
  if (!isString(value)) fail(key, proxyUri.expected, value)
  let url: URL | undefined
  try { url = new URL(value) } catch {}
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail(key, proxyUri.expected, redactUserinfo(value))
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') fail(key, 'a proxy URL without path, query or fragment', redactUserinfo(value))
}, { expected: '"env" or an http(s) proxy URL' })

const secretValue = Object.assign((value: unknown, key: string) => {
  if (!isString(value) || value === '' || kBadHeaderValue.test(value)) fail(key, secretValue.expected, isString(value) ? '***' : value)
}, { expected: 'a non-empty string without CR, LF or NUL' })

export const proxyOptions = defineGroup({
  uri: { check: proxyUri, default: undefined },
  token: { check: secretValue, default: undefined },
  headers: { check: record(headerName, secretValue), default: undefined },
  tls: { check: tlsOptions.check, default: undefined }
} satisfies Spec<ProxyOptions>, {
  required: ['uri'],
  refine (value, key) {
    const url = value.uri === 'env' ? undefined : new URL(value.uri as string)
    if (value.token !== undefined && url !== undefined && (url.username !== '' || url.password !== '')) {
      throw invalid(`${key}.token`, 'give the proxy credentials either in uri or as token, not both')
    }
    if (value.tls !== undefined && url?.protocol === 'http:') throw invalid(`${key}.tls`, 'applies to an https proxy only')
  }
})

/** The service's `proxy` option: `false`, a URL or `'env'`, or the object form. */
export const proxyOption = variants(falseBranch, [isString, proxyUri], [isPlainObject, proxyOptions.check])

/** A proxy after resolution. `uri`, `token` and `headers` hold secrets and are not enumerable, so they stay out of logs. */
export interface ResolvedProxy {
  /** `'env'`, or the proxy URL with its credentials. */
  readonly uri: string
  readonly token: string | undefined
  /** Lower-case names. */
  readonly headers: Record<string, string>
  /** TLS settings for an https proxy. */
  readonly tls: ResolvedTls | undefined
  /** `'env'` or `scheme://host:port`: the proxy as logs and stats may show it. */
  readonly display: string
}

/** A service's proxy (`at` is its dotted key, for messages about its `tls` files). */
export function resolveProxy (proxy: string | ProxyOptions, at: string, files: Map<string, Buffer>): ResolvedProxy {
  const p = typeof proxy === 'string' ? { uri: proxy } : proxy
  const url = p.uri === 'env' ? undefined : new URL(p.uri)
  const resolved = {
    tls: p.tls === undefined ? undefined : resolveTls(p.tls, `${at}.tls`, files),
    display: url === undefined ? 'env' : `${url.protocol}//${url.host}`
  }
  // Secrets are not enumerable: a logged or snapshotted option set never shows them.
  Object.defineProperties(resolved, { uri: { value: p.uri }, token: { value: p.token }, headers: { value: lowerKeys(p.headers) } })
  return resolved as ResolvedProxy
}

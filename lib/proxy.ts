import { EnvHttpProxyAgent, Pool, ProxyAgent, type Dispatcher, type buildConnector } from 'undici'
import type { ResolvedProxy, ResolvedService, ResolvedTls } from './config/resolved'
import { invalid } from './config/validate'
import {
  ConnectionError,
  TimeoutError,
  TlsError,
  describe,
  stamp,
  type CallTarget,
  type HttpServicesError
} from './errors'
import { errorCode, toCallError } from './transport-errors'

/**
 * Marks a failure of the connection to the proxy itself (not to the upstream behind it). It is created once per
 * failed connection and shared by every request queued on it, so it never reaches a caller: the interceptor below
 * turns it into a fresh typed error per call. Its code is deliberately not the cause's, so undici's special cases
 * for some codes (a TLS altname mismatch, a recoverable socket error) do not apply to a proxy that cannot be reached.
 */
class ProxyFailure extends Error {
  readonly code = 'HTTP_SERVICES_PROXY_FAILURE'
  /** `host:port` of the proxy. */
  readonly proxy: string
  /** The status the proxy answered a CONNECT (or a forwarded request) with, when it answered. */
  readonly status: number | undefined
  /** `host:port` asked for in a CONNECT. */
  readonly target: string | undefined

  constructor (proxy: string, cause: unknown, status?: number, target?: string) {
    super(status === undefined ? `proxy ${proxy} failed` : `proxy ${proxy} answered ${status}`, { cause })
    this.proxy = proxy
    this.status = status
    this.target = target
  }
}

/** `host:port` of a proxy URL: how messages name it, never with its credentials. */
function proxyName (url: URL): string {
  return `${url.hostname}:${url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80'}`
}

// The error undici's ProxyAgent raises when a proxy answers a forwarded request with 407 (its code is a generic one).
const kForwardAuthMessage = 'Proxy Authentication Required (407)'

/** The proxy URLs a service uses, read once when it opens. */
interface ProxyRoute {
  /** Proxy for http upstreams (`undefined`: none). */
  http: string | undefined
  /** Proxy for https upstreams (`undefined`: none). */
  https: string | undefined
}

/**
 * `HTTP_PROXY` / `HTTPS_PROXY` as undici's `EnvHttpProxyAgent` reads them (lower case first, an empty value is none).
 * A value that is not an http(s) URL is refused here, without echoing it: it may hold credentials.
 */
function envRoute (key: string): ProxyRoute {
  const read = (lower: string, upper: string): string | undefined => {
    const value = process.env[lower] ?? process.env[upper]
    if (value === undefined || value === '') return undefined
    let url: URL | undefined
    try { url = new URL(value) } catch {}
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw invalid(key, `proxy 'env': ${upper} (or ${lower}) is not an http(s) URL`)
    }
    return value
  }
  const http = read('http_proxy', 'HTTP_PROXY')
  return { http, https: read('https_proxy', 'HTTPS_PROXY') ?? http }
}

function tlsOptions (tls: ResolvedTls | undefined): buildConnector.BuildOptions {
  if (tls === undefined) return {}
  const { rejectUnauthorized, ca, cert, key, passphrase, servername } = tls
  return { rejectUnauthorized, ca, cert, key, passphrase, servername }
}

/**
 * The dispatcher of a service that goes through a proxy: undici's `ProxyAgent` (or `EnvHttpProxyAgent` for
 * `proxy: 'env'`) with the service's pool options. Plain http requests are forwarded to an http proxy as they are
 * (`proxyTunnel: false`); https ones are tunnelled with CONNECT. The service's `tls` applies to the upstream through
 * the tunnel, `proxy.tls` to an https proxy, and `timeout.connect` to reaching the proxy, to its answer to CONNECT and
 * to the TLS handshake with the upstream. Failures to reach the proxy become errors that name it (`host:port`, never
 * its credentials).
 */
export function createProxyDispatcher (o: ResolvedService, pool: Pool.Options): Dispatcher {
  const proxy = o.proxy as ResolvedProxy
  const connectTimeout = o.timeout.connect
  const route: ProxyRoute = proxy.uri === 'env' ? envRoute(`services.${o.name}.proxy`) : { http: proxy.uri, https: proxy.uri }
  const proxies = new Set<string>()
  for (const uri of [route.http, route.https]) if (uri !== undefined) proxies.add(new URL(uri).href)

  const { connections, pipelining, keepAliveTimeout, keepAliveMaxTimeout, headersTimeout, bodyTimeout } = pool
  const options = {
    ...pool,
    proxyTunnel: false,
    token: proxy.token,
    // undici writes Proxy-Authorization into this object, so it is a copy; left out when empty, so that each of the two
    // agents of 'env' makes its own rather than share one.
    headers: Object.keys(proxy.headers).length > 0 ? { ...proxy.headers } : undefined,
    requestTls: { timeout: connectTimeout, allowH2: o.allowH2, ...tlsOptions(o.tls) },
    proxyTls: { timeout: connectTimeout, ...tlsOptions(proxy.tls) },
    // The client that sends CONNECT: a proxy that accepts the connection but never answers fails in connect time.
    clientFactory: (url: URL, opts: object) => new TunnelPool(url, { ...opts, headersTimeout: connectTimeout }),
    factory: (origin: string | URL, opts: object): Dispatcher => {
      const href = String(origin)
      if (!proxies.has(href)) return new Pool(origin, opts)
      // The pool plain requests are forwarded on: the service's limits, and failures to connect marked as the proxy's.
      const connect = markConnector((opts as { connect: buildConnector.connector }).connect, proxyName(new URL(href)))
      return new Pool(origin, { connections, pipelining, keepAliveTimeout, keepAliveMaxTimeout, headersTimeout, bodyTimeout, connect })
    }
  }
  const agent = proxy.uri === 'env'
    ? new EnvHttpProxyAgent({ ...options, httpProxy: route.http ?? '', httpsProxy: route.https ?? '' })
    : new ProxyAgent({ ...options, uri: proxy.uri })
  const httpProxy = route.http !== undefined ? new URL(route.http) : undefined
  const forwarding = httpProxy?.protocol === 'http:' ? proxyName(httpProxy) : undefined
  return agent.compose(nameProxyFailures(o.name, connectTimeout, forwarding))
}

type TunnelOptions = Omit<Dispatcher.ConnectOptions, 'origin'>

/** The pool undici's ProxyAgent sends CONNECT on: a failure or a refusal of the proxy is marked as the proxy's. */
class TunnelPool extends Pool {
  private readonly proxy: string

  constructor (url: URL, options: Pool.Options) {
    super(url, options)
    this.proxy = proxyName(url)
  }

  override connect (options: TunnelOptions): Promise<Dispatcher.ConnectData>
  override connect (options: TunnelOptions, callback: (err: Error | null, data: Dispatcher.ConnectData) => void): void
  override connect (options: TunnelOptions, callback?: (err: Error | null, data: Dispatcher.ConnectData) => void): Promise<Dispatcher.ConnectData> | void {
    if (callback !== undefined) return super.connect(options, callback)
    return super.connect(options).then((data) => {
      if (data.statusCode === 200) return data
      data.socket.on('error', () => {}).destroy()
      throw new ProxyFailure(this.proxy, undefined, data.statusCode, options.path)
    }, (err: unknown) => {
      throw new ProxyFailure(this.proxy, err)
    })
  }
}

function markConnector (connect: buildConnector.connector, proxy: string): buildConnector.connector {
  return (options, callback) => {
    connect(options, (err, socket) => {
      if (err !== null) callback(new ProxyFailure(proxy, err), null)
      else callback(null, socket as NonNullable<typeof socket>)
    })
  }
}

/**
 * An interceptor that turns a marked proxy failure into a typed error for the call that met it, and keeps undici's
 * ProxyAgent from adding `host` to a header object the service shares between calls.
 */
function nameProxyFailures (service: string, connectTimeout: number, forwarding: string | undefined): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const headers = opts.headers as Record<string, string> | undefined
    if (headers !== undefined && headers !== null && headers.host === undefined) opts = { ...opts, headers: { ...headers } }
    const target = { service, method: opts.method, path: opts.path }
    return dispatch(opts, new ProxyErrorHandler(handler, target, connectTimeout, forwarding))
  }
}

class ProxyErrorHandler implements Dispatcher.DispatchHandler {
  private readonly handler: Dispatcher.DispatchHandler
  private readonly target: CallTarget
  private readonly connectTimeout: number
  private readonly forwarding: string | undefined

  constructor (handler: Dispatcher.DispatchHandler, target: CallTarget, connectTimeout: number, forwarding: string | undefined) {
    this.handler = handler
    this.target = target
    this.connectTimeout = connectTimeout
    this.forwarding = forwarding
  }

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: import('node:stream').Duplex): void {
    this.handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController, err: Error): void {
    this.handler.onResponseError?.(controller, proxyError(err, this.target, this.connectTimeout, this.forwarding) ?? err)
  }
}

/** The typed error for a call that failed at its proxy, or `undefined` when the failure is not the proxy's. */
function proxyError (err: Error, target: CallTarget, connectTimeout: number, forwarding: string | undefined): HttpServicesError | undefined {
  const cause = (err as { cause?: unknown }).cause
  let failure = err instanceof ProxyFailure ? err : cause instanceof ProxyFailure ? cause : undefined
  if (failure === undefined && forwarding !== undefined && errorCode(err) === 'UND_ERR_INVALID_ARG' && err.message === kForwardAuthMessage) {
    failure = new ProxyFailure(forwarding, err, 407)
  }
  if (failure === undefined) return undefined
  const where = `${describe(target)}: proxy ${failure.proxy}`
  if (failure.status !== undefined) {
    // Some proxies (tinyproxy 1.11) refuse credentials on CONNECT with a 401 rather than a 407.
    const auth = failure.status === 407 || failure.status === 401
    const message = auth
      ? `${where} answered ${failure.status} (authentication required): check the proxy credentials`
      : `${where} answered ${failure.status} to CONNECT ${failure.target ?? ''}`.trimEnd()
    return stamp(new ConnectionError(message, { cause: failure.cause ?? failure }), target,
      { errno: auth ? 'ERR_PROXY_AUTH_REQUIRED' : 'ERR_PROXY_CONNECT_STATUS' })
  }
  const code = errorCode(failure.cause) ?? ''
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') {
    const e = new TimeoutError(`${where} did not answer within ${connectTimeout} ms (connect timeout)`, { cause: failure.cause })
    return stamp(e, target, { phase: 'connect', timeout: connectTimeout })
  }
  const typed = toCallError(failure.cause, target)
  if (!(typed instanceof ConnectionError) && !(typed instanceof TlsError)) return typed
  const what = code === 'ECONNREFUSED'
    ? 'refused the connection'
    : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? 'could not be resolved'
      // Node's own text of a TLS or socket failure quotes certificate names and addresses: it stays on `cause`.
      : `${typed instanceof TlsError ? 'TLS ' : ''}failure`
  const Type = typed instanceof TlsError ? TlsError : ConnectionError
  const e = new Type(`${where} ${what}${code !== '' ? ` (${code})` : ''}`, { cause: failure.cause })
  return stamp(e, target, { errno: code !== '' ? code : undefined })
}

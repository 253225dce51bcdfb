/**
 * OAuth2 client credentials (RFC 6749 §4.4): the token a service's calls carry, fetched once for all concurrent calls
 * (single-flight), kept in a `TokenStore` until `expires_in - refreshBefore`, refreshed in the background while the
 * old token still serves, and dropped on a 401 only while it is still the cached one. Written here because no
 * well-kept package does client credentials over undici with these guarantees (simple-oauth2 and openid-client bring
 * their own HTTP stacks and no single-flight or early refresh).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool, type Dispatcher } from 'undici'
import type { ResolvedOAuth2 } from '../config/options/auth'
import { AuthError, TlsError, TransportError } from '../errors'
import { wireText } from '../error-text'
import { parseRetryAfter } from '../pipeline/retry-after'
import type { Logger, ServiceClient } from '../pipeline/types'
import { MemoryTokenStore, type CachedToken, type TokenStore } from './token-store'
import { inspect } from 'node:util'

/** Token requests that failed in a way worth another try (5xx, 429, network) are tried this many times in all. */
const kTokenAttempts = 3
const kBaseDelay = 100
/**
 * Guards against hammering the token endpoint. After a failed background refresh the next waits this long (calls keep
 * the old token meanwhile); a 401 this soon after a 401 dropped a token drops no other (a service rejecting every
 * token would make each call fetch one).
 */
const kQuietAfterFailure = 5_000
/** A `Retry-After` up to this is honoured between tries; a longer one ends the tries (calls would wait that long). */
const kMaxRetryAfter = 5_000
/** Limits on one token request through the dedicated pool. */
const kTokenTimeout = 10_000
const kMaxTokenBody = 64 * 1024

/** One answer of the token endpoint. */
interface TokenAnswer {
  status: number
  text: string
  /** Its `Retry-After`, in ms, when readable. */
  retryAfter: number | undefined
}

/** Thrown inside `fetchOnce` for an answer worth trying again. */
class Retryable extends Error {
  /** The wait the endpoint asked for (`Retry-After`), in ms. */
  retryAfter: number | undefined = undefined
}

/** The client-credentials token source of one service. */
export class OAuth2TokenSource {
  private readonly service: string
  private readonly settings: ResolvedOAuth2
  private readonly log: Logger
  private readonly store: TokenStore
  private readonly key: string
  private readonly clientOf: (name: string) => ServiceClient
  private pool: Pool | undefined = undefined
  private inflight: Promise<string> | undefined = undefined
  private closed = false
  /** `Date.now()` before which no background refresh starts (one just failed). */
  private refreshAfter = 0
  /** `Date.now()` of the last 401 that dropped a token. */
  private droppedAt = -Infinity
  /** Aborted by `close()`: ends a backoff sleep between token requests. */
  private readonly closing = new AbortController()
  /** Token requests made (each try counts): for tests and stats. */
  requests = 0

  /** The registry's injected dispatcher: token requests without `tokenService` go through it instead of a pool. */
  private readonly injected: Dispatcher | undefined

  /** What `util.inspect` shows: never the settings (the client secret) or the store (the token). */
  [inspect.custom] (): string {
    return `OAuth2TokenSource { service: ${JSON.stringify(this.service)}, tokenUrl: ${JSON.stringify(this.settings.tokenUrl)}, requests: ${this.requests} }`
  }

  constructor (service: string, settings: ResolvedOAuth2, log: Logger, clientOf: (name: string) => ServiceClient,
    injected?: Dispatcher, store: TokenStore = new MemoryTokenStore()) {
    this.service = service
    this.injected = injected
    this.settings = settings
    this.log = log
    this.store = store
    this.clientOf = clientOf
    // One cache entry per client and token endpoint: two services with the same credentials share it in a shared store.
    this.key = `${settings.tokenService ?? ''}|${settings.tokenUrl}|${settings.clientId}|${settings.scope ?? ''}|${settings.audience ?? ''}|${settings.resource ?? ''}`
  }

  /**
   * A usable access token: the cached one (a string, no promise) while it is fresh; the cached one too while it is
   * due for refresh (the refresh starts in the background); otherwise the one being fetched, shared by every caller.
   */
  token (): string | Promise<string> {
    const cached = this.store.get(this.key)
    if (cached !== undefined) {
      const now = Date.now()
      if (now < cached.refreshAt) return cached.accessToken
      if (now < cached.expiresAt) {
        if (now >= this.refreshAfter) this.fetch().catch(() => {}) // logged in fetch; calls keep the old token until it expires
        return cached.accessToken
      }
    }
    return this.fetch()
  }

  /**
   * After a 401 sent with `token`: drops it, unless another call already replaced it, and says whether a resend may
   * help. It may not when `token` is still cached but a 401 dropped another one moments ago: the service rejects
   * fresh tokens too, and fetching one per call would hammer the token endpoint.
   */
  invalidate (token: string): boolean {
    if (this.store.get(this.key)?.accessToken !== token) return true
    const now = Date.now()
    if (now - this.droppedAt < kQuietAfterFailure) return false
    this.droppedAt = now
    this.store.delete(this.key)
    return true
  }

  /**
   * Ends the token requests: the dedicated pool is destroyed, not closed (closing waits for a request in flight, so a
   * token endpoint that does not answer would keep the process alive until `headersTimeout`), and a backoff sleep
   * ends at once. Runs once the service's calls are done or aborted: no call waits for a token any more.
   */
  async close (): Promise<void> {
    this.closed = true
    this.closing.abort()
    const pool = this.pool
    this.pool = undefined
    await pool?.destroy(this.error('service closed')).catch(() => {})
  }

  /** The token request in flight, or a new one. */
  private fetch (): Promise<string> {
    if (this.inflight !== undefined) return this.inflight
    const flight = this.fetchWithRetries().then((token) => {
      this.inflight = undefined
      this.refreshAfter = 0
      this.store.set(this.key, token)
      this.log.debug({ expiresAt: token.expiresAt === Infinity ? null : new Date(token.expiresAt).toISOString() }, 'OAuth2 token refreshed')
      return token.accessToken
    }, (err: unknown) => {
      this.inflight = undefined
      this.refreshAfter = Date.now() + kQuietAfterFailure
      if (!this.closed) this.log.warn({ err }, 'OAuth2 token request failed')
      throw err
    })
    this.inflight = flight
    return flight
  }

  private async fetchWithRetries (): Promise<CachedToken> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.fetchOnce()
      } catch (err) {
        if (this.closed) throw this.error('service closed')
        if (!(err instanceof Retryable)) throw err
        const asked = err.retryAfter ?? 0
        if (asked > kMaxRetryAfter) throw this.error(`token endpoint asked to wait ${Math.ceil(asked / 1000)} s (${err.message})`)
        if (attempt >= kTokenAttempts) throw this.error(`token endpoint failed ${kTokenAttempts} times (${err.message})`, err.cause)
        try {
          await sleep(Math.max(asked, kBaseDelay * 2 ** (attempt - 1)), undefined, { signal: this.closing.signal })
        } catch {
          throw this.error('service closed')
        }
      }
    }
  }

  private async fetchOnce (): Promise<CachedToken> {
    const { headers, body } = this.tokenRequest()
    this.requests++
    let answer: TokenAnswer
    try {
      answer = await this.post(headers, body)
    } catch (err) {
      if (err instanceof AuthError) throw err
      const code = (err as { code?: string }).code ?? ''
      // Through `tokenService`, only a transport failure is worth another try: a refused request, a closed client or
      // an open breaker would fail the same way (TLS too). The dedicated pool throws undici's network errors only.
      if (this.settings.tokenService !== undefined && (!(err instanceof TransportError) || err instanceof TlsError)) {
        throw this.error(`token request through ${this.settings.tokenService} failed (${code})`, err)
      }
      throw new Retryable(`network error ${code}`.trim(), { cause: err })
    }
    const { status, text } = answer
    if (status >= 500 || status === 429) {
      const retry = new Retryable(`status ${status}`)
      retry.retryAfter = answer.retryAfter
      throw retry
    }
    let parsed: Record<string, unknown> | undefined
    try {
      const value: unknown = JSON.parse(text)
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) parsed = value as Record<string, unknown>
    } catch {}
    if (status !== 200) {
      // RFC 6749 §5.2: the endpoint's words go in properties, never in the message (Fastify sends it to clients).
      const e = this.error(`token endpoint answered ${status}`)
      if (typeof parsed?.error === 'string') e.error = wireText(parsed.error, 100)
      if (typeof parsed?.error_description === 'string') e.error_description = wireText(parsed.error_description, 200)
      throw e
    }
    const accessToken = parsed?.access_token
    if (typeof accessToken !== 'string' || accessToken === '' || /[\r\n\0]/.test(accessToken)) {
      throw this.error('token endpoint answered without a usable access_token')
    }
    // A missing token_type is taken for Bearer (some endpoints omit it); another type cannot be sent as one.
    if (parsed?.token_type !== undefined && (typeof parsed.token_type !== 'string' || parsed.token_type.toLowerCase() !== 'bearer')) {
      throw this.error('token endpoint answered a token_type other than Bearer')
    }
    const now = Date.now()
    const expiresIn = Number(parsed?.expires_in)
    if (parsed?.expires_in === undefined || !Number.isFinite(expiresIn)) {
      return { accessToken, expiresAt: Infinity, refreshAt: Infinity }
    }
    // Already expired: it serves the calls that waited for it, and the next call fetches another.
    if (expiresIn <= 0) return { accessToken, expiresAt: now, refreshAt: now }
    const expiresAt = now + expiresIn * 1000
    // A lifetime shorter than `refreshBefore` refreshes at half its life rather than on every call.
    const refreshAt = Math.max(expiresAt - this.settings.refreshBefore, now + expiresIn * 500)
    return { accessToken, expiresAt, refreshAt }
  }

  /** The form and headers of a client-credentials request (RFC 6749 §4.4.2, §2.3.1). */
  private tokenRequest (): { headers: Record<string, string>, body: string } {
    const s = this.settings
    // `extraParams` first: the grant, scope and client credentials set after it cannot be overridden by it.
    const form = new URLSearchParams(s.extraParams)
    form.set('grant_type', 'client_credentials')
    if (s.scope !== undefined) form.set('scope', s.scope)
    if (s.audience !== undefined) form.set('audience', s.audience)
    if (s.resource !== undefined) form.set('resource', s.resource)
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    if (s.authMethod === 'post') {
      form.set('client_id', s.clientId)
      form.set('client_secret', s.clientSecret)
    } else {
      // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined with ":" and base64-encoded.
      headers.authorization = `Basic ${Buffer.from(`${formEncode(s.clientId)}:${formEncode(s.clientSecret)}`).toString('base64')}`
    }
    return { headers, body: form.toString() }
  }

  /** POSTs the form to the token endpoint: through `tokenService`, or the dedicated pool. */
  private async post (headers: Record<string, string>, body: string): Promise<TokenAnswer> {
    const s = this.settings
    if (s.tokenService !== undefined) {
      const res = await this.clientOf(s.tokenService).request('POST', s.tokenUrl, { headers, body, throwHttpErrors: false, retry: false })
      return { status: res.status, text: (await res.text()).slice(0, kMaxTokenBody), retryAfter: parseRetryAfter(res.headers['retry-after']) }
    }
    if (this.closed) throw this.error('service closed')
    const url = new URL(s.tokenUrl)
    const request = { origin: url.origin, method: 'POST' as const, path: url.pathname + url.search, headers, body, headersTimeout: kTokenTimeout, bodyTimeout: kTokenTimeout }
    let dispatcher: Dispatcher | undefined = this.injected
    // No proxy here (not even `proxy: 'env'`): a token endpoint behind a proxy is reached through `tokenService`.
    dispatcher ??= this.pool ??= new Pool(url.origin, { connections: 2, headersTimeout: kTokenTimeout, bodyTimeout: kTokenTimeout, connectTimeout: kTokenTimeout })
    const res = await dispatcher.request(request)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > kMaxTokenBody) {
        res.body.destroy()
        break
      }
      chunks.push(chunk as Buffer)
    }
    return { status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), retryAfter: parseRetryAfter(res.headers['retry-after']) }
  }

  private error (problem: string, cause?: unknown): AuthError {
    const message = `${this.service}: OAuth2 ${problem}`
    return cause === undefined ? new AuthError(message) : new AuthError(message, { cause })
  }
}

/** `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B). */
function formEncode (value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2)
}

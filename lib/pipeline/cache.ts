/**
 * The HTTP cache (`cache` option), a policy in the pipeline's `cache` slot, outermost below `fallback`: a fresh hit
 * answers before the rate limiter, the bulkhead, the retry, the breaker and the network spend anything.
 *
 * Why a policy and not undici's `interceptors.cache` on the service's dispatcher: the dispatcher is below every
 * policy, so a hit there would still take a rate-limit permit, a bulkhead slot and a breaker attempt. And undici 7.30's
 * interceptor, on a 304, serves the stored body without refreshing the entry (or deletes it when the 304 carries
 * Cache-Control), so every later call revalidates again; stale-if-error there covers 5xx answers, not connection
 * errors, timeouts or an open breaker.
 *
 * What is undici's: storing (`CacheHandler`: what may be stored and for how long, Vary, stripped headers, unsafe
 * methods invalidating, a 304 refreshing an entry), the cache key, the Cache-Control parser and the stores' interface.
 * What is written here, ported from undici's `lib/interceptor/cache.js` (module-private there): the lookup's
 * decisions (fresh, stale, must revalidate, within stale-while-revalidate) and the revalidation request's headers.
 */
import { PassThrough, type Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { Call } from '../call'
import { publishCacheServed } from '../diagnostics/publish'
import type { ResolvedCache } from '../config/options/cache'
import { BulkheadRejectedError, CircuitOpenError, RateLimitedError, TransportError } from '../errors'
import { HttpResponse, type CacheStatus } from '../response'
import { kCredentialHeaders } from '../credential-headers'
import { GuardedStore, kCredentials, kPartitionHeader, privateKeyHeaders, type MarkedKey } from '../cache/guarded-store'
import { RedisCacheStore } from '../cache/redis-store'
import {
  CacheHandler, MemoryCacheStore, isEtagUsable, isInvalidOrWildcardVaryHeader, makeCacheKey, parseCacheControlHeader,
  type CacheControlDirectives, type CacheHandlerOptions, type CacheKey, type DispatchController, type DispatchHandler,
  type GetResult
} from '../cache/undici-cache'
import type { CallContext, Next, Policy, PolicyFactory, ServiceRuntime } from './types'

const kSafeMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])
const noop = (): void => {}
/** The downstream of a `CacheHandler` whose output nobody reads (the policy answers from its own objects). */
const kSink: DispatchHandler = {}
const kController: DispatchController = {
  pause: noop, resume: noop, abort: noop, paused: false, aborted: false, reason: null
}

/** Failures a stale entry may stand in for (`staleIfError`, `stale-if-error`): the upstream's and the limits'. */
function servesStale (err: unknown): boolean {
  return err instanceof TransportError || err instanceof CircuitOpenError || err instanceof BulkheadRejectedError ||
    err instanceof RateLimitedError
}

/** The request's own Cache-Control (or `Pragma: no-cache`), `undefined` when it has neither. */
function requestDirectives (headers: Record<string, string>): CacheControlDirectives | undefined {
  const cc = headers['cache-control']
  if (cc !== undefined) return parseCacheControlHeader(cc)
  const pragma = headers.pragma
  if (pragma !== undefined && pragma.split(',').some((d) => d.trim().toLowerCase() === 'no-cache')) return { 'no-cache': true }
  return undefined
}

// --- ported from undici lib/interceptor/cache.js (7.30.3) ---

function needsRevalidation (result: GetResult, req: CacheControlDirectives | undefined, headers: Record<string, string>): boolean {
  if (req?.['no-cache'] !== undefined) return true
  const noCache = result.cacheControlDirectives?.['no-cache']
  if (noCache !== undefined && !Array.isArray(noCache)) return true
  return headers['if-modified-since'] !== undefined || headers['if-none-match'] !== undefined
}

function requiresRevalidationWhenStale (result: GetResult, shared: boolean): boolean {
  const cc = result.cacheControlDirectives ?? {}
  return cc['must-revalidate'] === true || (shared && (cc['proxy-revalidate'] === true || cc['s-maxage'] !== undefined))
}

function isStale (result: GetResult, req: CacheControlDirectives | undefined, shared: boolean, now: number): boolean {
  if (now > result.staleAt) {
    const maxStale = req?.['max-stale']
    if (!requiresRevalidationWhenStale(result, shared) && maxStale !== undefined && maxStale > 0) {
      return now > result.staleAt + maxStale * 1000
    }
    return true
  }
  const minFresh = req?.['min-fresh']
  return minFresh !== undefined && minFresh > 0 && result.staleAt - now <= minFresh * 1000
}

function withinStaleWhileRevalidate (result: GetResult, shared: boolean, now: number): boolean {
  const swr = result.cacheControlDirectives?.['stale-while-revalidate']
  if (swr === undefined || swr <= 0 || requiresRevalidationWhenStale(result, shared)) return false
  return now <= result.staleAt + swr * 1000
}

/** A 304 that may not refresh the entry: its ETag is not the stored one, or it forbids reuse. */
function refusesRefresh (result: GetResult, headers: IncomingHttpHeaders, shared: boolean): boolean {
  const etag = headers.etag
  if (etag !== undefined) {
    const stored = result.etag
    if (typeof stored !== 'string' || !isEtagUsable(etag) || !isEtagUsable(stored)) return true
    const bare = (tag: string): string => tag.startsWith('W/') ? tag.slice(2) : tag
    if (etag.startsWith('W/') ? bare(etag) !== bare(stored) : etag !== stored) return true
  }
  if (headers.vary !== undefined && isInvalidOrWildcardVaryHeader(headers.vary)) return true
  if (headers['set-cookie'] !== undefined) return true // neither cache stores one (a private one: GuardedStore)
  const cc = headers['cache-control']
  if (cc === undefined) return false
  const d = parseCacheControlHeader(cc)
  return d['no-store'] === true || (shared && d.private === true)
}

// --- end of the port ---

/** A service's HTTP cache: its store and the policy. */
class HttpCache {
  readonly policy: Policy
  private readonly service: ServiceRuntime
  private readonly store: GuardedStore
  private readonly handlerOptions: CacheHandlerOptions
  private readonly origin: string
  private readonly shared: boolean
  private readonly staleIfError: number
  /**
   * `true` when the service sends credentials of its own (`auth`, issue 19): every request of it counts as carrying
   * credentials, whatever its headers show here (the `auth` policy adds some below this one).
   */
  private readonly credentialed: boolean
  /**
   * A private cache's credential headers: `kCredentialHeaders` and the service's own `auth` header (`forward`'s, an API
   * key's), which the call's headers hold here whatever its name.
   */
  private readonly credentialHeaders: ReadonlySet<string>
  /** Keys being revalidated in the background (stale-while-revalidate): one request each at a time. */
  private readonly revalidating = new Set<string>()
  private readonly counts = { hit: 0, revalidated: 0, miss: 0, stale: 0 }

  constructor (service: ServiceRuntime, options: ResolvedCache) {
    this.service = service
    this.origin = service.options.origins[0]
    this.shared = options.type === 'shared'
    this.staleIfError = options.staleIfError
    this.credentialed = service.options.auth !== undefined
    const own = service.options.auth?.header
    this.credentialHeaders = own === undefined || kCredentialHeaders.has(own) ? kCredentialHeaders : new Set([...kCredentialHeaders, own])
    const inner = options.store === 'redis'
      ? new RedisCacheStore(service.redis as NonNullable<ServiceRuntime['redis']>, service.name, options.maxEntrySize)
      : new MemoryCacheStore({ maxEntrySize: options.maxEntrySize, maxSize: options.maxSize })
    this.store = new GuardedStore(inner, options.type, options.staleIfError)
    this.handlerOptions = { store: this.store, type: options.type }
    this.policy = (ctx, next) => this.run(ctx, next)
    service.addStats('cache', () => ({ ...this.counts }))
    service.onReset?.(() => {
      this.counts.hit = this.counts.revalidated = this.counts.miss = this.counts.stale = 0
    })
  }

  private run (ctx: CallContext, next: Next): Promise<HttpResponse> {
    if (ctx.method !== 'GET') {
      if (kSafeMethods.has(ctx.method)) return next(ctx).then((res) => this.miss(ctx, res))
      return next(ctx).then((res) => this.invalidate(ctx, res))
    }
    const req = requestDirectives(ctx.headers)
    if (req?.['no-store'] === true) return next(ctx).then((res) => this.miss(ctx, res))
    const o = ctx.options
    const headers = this.shared ? ctx.headers : privateKeyHeaders(ctx.headers, this.credentialHeaders, o.token, o.auth === false)
    const key: MarkedKey = makeCacheKey({ origin: this.origin, method: 'GET', path: ctx.path, headers })
    if (this.credentialed || o.token !== undefined) key[kCredentials] = true
    let found: GetResult | Promise<GetResult | undefined> | undefined
    try {
      found = this.store.get(key)
    } catch {
      found = undefined
    }
    if (found !== undefined && typeof (found as Promise<unknown>).then === 'function') {
      return (found as Promise<GetResult | undefined>).then((result) => this.answer(ctx, next, key, req, result))
    }
    return this.answer(ctx, next, key, req, found as GetResult | undefined)
  }

  private answer (ctx: CallContext, next: Next, key: CacheKey, req: CacheControlDirectives | undefined, result: GetResult | undefined): Promise<HttpResponse> {
    const now = Date.now()
    if (result === undefined || now > result.deleteAt) return this.fetch(ctx, next, key)
    if (result.headers['set-cookie'] !== undefined) {
      this.forget(key)
      return this.fetch(ctx, next, key)
    }
    const age = Math.max(0, Math.round((now - result.cachedAt) / 1000))
    const maxAgeExpired = req?.['max-age'] !== undefined && age >= req['max-age']
    const stale = maxAgeExpired || isStale(result, req, this.shared, now)
    const revalidate = maxAgeExpired || needsRevalidation(result, req, ctx.headers)
    if (!stale && !revalidate) return Promise.resolve(this.serve(ctx, result, result.headers, age, 'hit'))
    if (!revalidate && withinStaleWhileRevalidate(result, this.shared, now)) {
      this.revalidateInBackground(ctx, next, key, result)
      return Promise.resolve(this.serve(ctx, result, result.headers, age, 'stale'))
    }
    return this.revalidate(ctx, next, key, result, age)
  }

  /** Sends a conditional request; a 304 serves (and refreshes) the entry, a failure may serve it stale. */
  private async revalidate (ctx: CallContext, next: Next, key: CacheKey, result: GetResult, age: number): Promise<HttpResponse> {
    const plain = ctx.headers
    this.conditional(ctx, result)
    let res: HttpResponse
    try {
      res = await next(ctx)
    } catch (err) {
      if (servesStale(err)) {
        const stale = this.staleOnError(ctx, result, age, err)
        if (stale !== undefined) return stale
      }
      throw err
    }
    if (res.status === 304) {
      void res.dump()
      if (refusesRefresh(result, res.headers, this.shared)) {
        this.forget(key)
        ctx.headers = plain
        return this.fetch(ctx, next, key)
      }
      const headers = { ...result.headers, ...withoutAge(res.headers) }
      this.refresh(key, headers)
      return this.serve(ctx, result, headers, 0, 'revalidated')
    }
    if (res.status >= 500 && res.status <= 504) {
      const stale = this.staleOnError(ctx, result, age, undefined, res.status)
      if (stale !== undefined) {
        res.destroy()
        return stale
      }
    }
    return this.keep(ctx, key, res)
  }

  /** The conditional headers of a revalidation (undici's `makeRevalidationHeaders`). */
  private conditional (ctx: CallContext, result: GetResult): void {
    const lastModified = result.headers['last-modified']
    ctx.setHeader('if-modified-since', typeof lastModified === 'string' && !Number.isNaN(Date.parse(lastModified))
      ? lastModified
      : new Date(result.cachedAt).toUTCString())
    if (result.etag !== undefined) ctx.setHeader('if-none-match', result.etag)
    if (result.vary !== undefined) {
      for (const [name, value] of Object.entries(result.vary)) {
        if (value !== null && name !== kPartitionHeader) ctx.setHeader(name, Array.isArray(value) ? value.join(', ') : value)
      }
    }
  }

  /** A stale entry for a failed revalidation, when the window allows it; `undefined` otherwise. */
  private staleOnError (ctx: CallContext, result: GetResult, age: number, err: unknown, status?: number): HttpResponse | undefined {
    if (requiresRevalidationWhenStale(result, this.shared)) return undefined
    const directive = result.cacheControlDirectives?.['stale-if-error'] ?? 0
    const window = Math.max(this.staleIfError, directive * 1000)
    if (window <= 0 || Date.now() > result.staleAt + window) return undefined
    return this.serve(ctx, result, result.headers, age, 'stale', err, status)
  }

  /**
   * Stale-while-revalidate: one background revalidation per entry (its path and partition), on a call of its own (no
   * caller's signal) that keeps the caller's `token` / `auth: false`: its answer is stored for the caller's credentials.
   */
  private revalidateInBackground (ctx: CallContext, next: Next, key: CacheKey, result: GetResult): void {
    const id = `${key.path}\0${key.headers?.[kPartitionHeader] ?? ''}`
    if (this.revalidating.has(id)) return
    this.revalidating.add(id)
    const { token, auth } = ctx.options
    const options = { ...(token !== undefined && { token }), ...(auth !== undefined && { auth }) }
    const call = new Call(this.service, 'GET', ctx.path, ctx.route, { ...ctx.headers }, true, null, options, this.service.log)
    this.conditional(call, result)
    next(call).then((res) => {
      if (res.status === 304) {
        void res.dump()
        if (refusesRefresh(result, res.headers, this.shared)) this.forget(key)
        else this.refresh(key, { ...result.headers, ...withoutAge(res.headers) })
        return
      }
      return this.keep(call, key, res, true).dump()
    }).catch(noop).finally(() => this.revalidating.delete(id))
  }

  /** A miss: the upstream's answer, stored when it may be. */
  private async fetch (ctx: CallContext, next: Next, key: CacheKey): Promise<HttpResponse> {
    return this.keep(ctx, key, await next(ctx))
  }

  /**
   * Shows `res` to undici's `CacheHandler`; when it stores it, the body goes to the store as the caller reads it (as it
   * is, when the transport read it already). Returns the response the caller gets, marked `miss` (and counted, unless
   * it answers a `background` revalidation, which is no caller's call).
   */
  private keep (ctx: CallContext, key: CacheKey, res: HttpResponse, background = false): HttpResponse {
    const handler = new CacheHandler(this.handlerOptions, key, kSink)
    let writer
    // A writer left over by an asynchronous refresh (Redis) is not this response's.
    this.store.takeWriter()
    try {
      handler.onRequestStart(kController, {})
      handler.onResponseStart(kController, res.status, res.headers as Record<string, unknown>, '')
      writer = this.store.takeWriter()
    } catch {
      writer = undefined
    }
    let out = res
    if (writer === undefined) {
      handler.onResponseEnd(kController, {})
    } else {
      const bytes = res.peekBuffered()
      if (bytes !== undefined || res.bodyStream === null) {
        if (bytes !== undefined && bytes.length > 0) handler.onResponseData(kController, bytes)
        handler.onResponseEnd(kController, {})
      } else {
        out = tee(res, handler)
      }
    }
    return background ? out : this.miss(ctx, out)
  }

  /** Feeds a 304 (its headers over the stored ones) to undici's `CacheHandler`: it stores the entry afresh. */
  private refresh (key: CacheKey, headers: IncomingHttpHeaders): void {
    try {
      const handler = new CacheHandler(this.handlerOptions, key, kSink)
      handler.onRequestStart(kController, {})
      handler.onResponseStart(kController, 304, headers as Record<string, unknown>, '')
      handler.onResponseEnd(kController, {})
      this.store.takeWriter()
    } catch {}
  }

  /** A successful unsafe method invalidates what is stored for its path (and Location / Content-Location). */
  private invalidate (ctx: CallContext, res: HttpResponse): HttpResponse {
    if (res.status >= 200 && res.status < 400) {
      try {
        const key = makeCacheKey({ origin: this.origin, method: ctx.method, path: ctx.path, headers: ctx.headers })
        const handler = new CacheHandler(this.handlerOptions, key, kSink)
        handler.onRequestStart(kController, {})
        handler.onResponseStart(kController, res.status, res.headers as Record<string, unknown>, '')
        handler.onResponseEnd(kController, {})
      } catch {}
    }
    return this.miss(ctx, res)
  }

  private forget (key: CacheKey): void {
    try {
      const deleted = this.store.delete(key)
      if (deleted !== undefined) deleted.catch(noop)
    } catch {}
  }

  /** A response made from a stored entry. */
  private serve (
    ctx: CallContext, result: GetResult, headers: Record<string, string | string[]> | IncomingHttpHeaders, age: number,
    status: CacheStatus, error?: unknown, upstreamStatus?: number
  ): HttpResponse {
    const options = this.service.options
    const res = HttpResponse.unread(result.statusCode, { ...headers, age: String(age) }, {
      service: this.service.name,
      method: ctx.method,
      path: ctx.path,
      origin: this.origin,
      maxResponseSize: options.maxResponseSize
    })
    res.setBody(bodyOf(result.body))
    res.attempts = 0
    res.call = ctx.call
    res.cache = status
    this.counts[status]++
    publishCacheServed(ctx, status, age, error, upstreamStatus)
    return res
  }

  /** An answer of the upstream (or the limits above it), marked `miss`. */
  private miss (ctx: CallContext, res: HttpResponse): HttpResponse {
    res.cache = 'miss'
    this.counts.miss++
    publishCacheServed(ctx, 'miss', undefined)
    return res
  }
}

/** The headers of a 304 without `age` (a stored entry's age is added when it is served). */
function withoutAge (headers: IncomingHttpHeaders): IncomingHttpHeaders {
  if (headers.age === undefined) return headers
  const { age: _age, ...rest } = headers
  return rest
}

/** The bytes of a stored body, as the stores give it (undici's memory store: its chunks). */
function bodyOf (body: GetResult['body']): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0)
  if (Buffer.isBuffer(body)) return body
  if (typeof body === 'string') return Buffer.from(body)
  if (Array.isArray(body)) {
    return body.length === 1 && Buffer.isBuffer(body[0]) ? body[0] : Buffer.concat(body.map((c: Buffer | string) => Buffer.isBuffer(c) ? c : Buffer.from(c)))
  }
  throw new TypeError('a cache store returned a body that is not bytes')
}

/**
 * The caller's response reading `res`'s stream through a PassThrough, while each chunk also goes to `handler` (the
 * store): stored once the body ended, dropped when it fails or is cut short.
 */
function tee (res: HttpResponse, handler: Required<DispatchHandler>): HttpResponse {
  const source = res.bodyStream as Readable
  const pass = new PassThrough()
  let ended = false
  source.on('data', (chunk: Buffer) => handler.onResponseData(kController, chunk))
  source.once('end', () => {
    ended = true
    handler.onResponseEnd(kController, {})
  })
  source.once('close', () => {
    if (!ended) handler.onResponseError(kController, new Error('the body ended early'))
  })
  source.once('error', (err) => { pass.destroy(err) })
  source.pipe(pass)
  pass.once('close', () => { if (!source.destroyed && !ended) source.destroy() })
  const out = new HttpResponse(res.status, res.headers, pass, res.meta)
  out.attempts = res.attempts
  out.call = res.call
  return out
}

/** The `cache` policy: in the chain when the service sets `cache`. */
export const cache: PolicyFactory = (service) => {
  const options = service.options.cache
  if (options === undefined) return undefined
  return service.shared('cache', () => new HttpCache(service, options)).policy
}

/**
 * The store a service's cache writes through: RFC 9111 §3.5 for credentials beyond undici's own check (a shared
 * cache), entries of their own for each set of credentials and none with Set-Cookie (a private one), the
 * `staleIfError` window kept in the store, and a way for the cache policy to learn whether undici's `CacheHandler`
 * decided to store the response it was just shown (its decision is made inside `onResponseStart`, synchronously, and
 * shows only as a call to `createWriteStream`).
 */
import { createHash } from 'node:crypto'
import { kCredentialHeaders } from '../credential-headers'
import type { CacheKey, CacheStore, CacheValue, EntryWriter, GetResult } from './undici-cache'

/**
 * Marks a cache key whose request carries credentials its headers do not show at the cache's place in the pipeline:
 * those the `auth` policy adds below it (issue 19: OAuth2 tokens, a bearer function, an API key in the query, or one
 * in a header of its own name) and a call's `token`. `CacheHandler` hands the same key object to `createWriteStream`.
 */
export const kCredentials = Symbol('fastify-http-services.cache.credentials')

/** A cache key, perhaps marked (see `kCredentials`). */
export type MarkedKey = CacheKey & { [kCredentials]?: true }

/** `true` when the request of `key` carries credentials: one of `kCredentialHeaders`, or the `kCredentials` mark. */
export function carriesCredentials (key: MarkedKey): boolean {
  if (key[kCredentials] === true) return true
  const headers = key.headers
  if (headers === undefined) return false
  for (const name of kCredentialHeaders) if (Object.hasOwn(headers, name)) return true
  return false
}

/**
 * The header a private cache's key holds in place of a request's credentials: a SHA-256 of them. Never sent: it is in
 * the key's headers only, and the stored entries vary on it, so each set of credentials has entries of its own.
 */
export const kPartitionHeader = 'x-fastify-http-services-credentials'

/**
 * A private cache's key headers for a request with `headers`: without credentials, the headers themselves; with some,
 * a copy without them and with `kPartitionHeader`, their hash. `names` are the credential headers: `kCredentialHeaders`
 * and the service's own `auth` header (`forward`, an API key's), which are among the call's headers here. A call's
 * `token` and `auth: false` (`noAuth`) count too: the `auth` policy below changes the credentials sent for them. undici's
 * `CacheHandler` then applies no credentials rule (RFC 9111 §3.5 is for shared caches), the store never holds a
 * credential, and one user's answer is never served for another's credentials.
 */
export function privateKeyHeaders (
  headers: Record<string, string>, names: ReadonlySet<string>, token: string | undefined, noAuth: boolean
): Record<string, string> {
  let hash
  let out: Record<string, string> | undefined
  for (const name of names) {
    if (!Object.hasOwn(headers, name)) continue
    hash ??= createHash('sha256')
    hash.update(`${name}\0${headers[name]}\0`)
    out ??= { ...headers }
    delete out[name]
  }
  if (token !== undefined) (hash ??= createHash('sha256')).update(`token\0${token}\0`)
  // The service's credentials are not sent: not the entries of the calls that send them, whatever the headers here.
  if (noAuth) (hash ??= createHash('sha256')).update('auth\0false\0')
  if (hash === undefined) return headers
  return { ...(out ?? headers), [kPartitionHeader]: hash.digest('base64url') }
}

export class GuardedStore implements CacheStore {
  private readonly inner: CacheStore
  private readonly shared: boolean
  private readonly staleIfError: number
  private lastWriter: EntryWriter | undefined = undefined

  constructor (inner: CacheStore, type: 'shared' | 'private', staleIfError: number) {
    this.inner = inner
    this.shared = type === 'shared'
    this.staleIfError = staleIfError
  }

  get (key: CacheKey): GetResult | Promise<GetResult | undefined> | undefined {
    return this.inner.get(key)
  }

  createWriteStream (key: CacheKey, value: CacheValue): EntryWriter | undefined {
    this.lastWriter = undefined
    const cc = value.cacheControlDirectives ?? {}
    // RFC 9111 §3.5: a shared cache stores the answer to a request with credentials only when the response allows it.
    if (this.shared && carriesCredentials(key) && cc.public !== true && cc['s-maxage'] === undefined && cc['must-revalidate'] !== true) {
      return undefined
    }
    if (!this.shared) {
      // Set-Cookie hands the caller a session (often a new one): replayed, another caller would get it.
      if (value.headers['set-cookie'] !== undefined) return undefined
      // Each entry is selected by its request's credentials (see `privateKeyHeaders`); `null` (the header must be
      // absent, in undici's stores and ours) for none: an entry without a partition would match every request.
      value = { ...value, vary: { ...value.vary, [kPartitionHeader]: key.headers?.[kPartitionHeader] ?? null } }
    }
    if (this.staleIfError > 0) value = { ...value, deleteAt: Math.max(value.deleteAt, value.staleAt + this.staleIfError) }
    const writer = this.inner.createWriteStream(key, value)
    this.lastWriter = writer
    return writer
  }

  delete (key: CacheKey): void | Promise<void> {
    return this.inner.delete(key)
  }

  /** The writer the last `createWriteStream` handed out, once: `undefined` when it stored nothing. */
  takeWriter (): EntryWriter | undefined {
    const writer = this.lastWriter
    this.lastWriter = undefined
    return writer
  }
}

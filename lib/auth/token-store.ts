/**
 * Where OAuth2 access tokens are kept between calls. Per process by default; a shared store (Redis) may later let
 * several instances of an app share one token, so the client only ever goes through this interface.
 */

/** One access token as the client keeps it. */
export interface CachedToken {
  /** The access token. A secret. */
  readonly accessToken: string
  /** `Date.now()` time after which it is not used; `Infinity` when the endpoint gave no `expires_in` (kept until a 401). */
  readonly expiresAt: number
  /** `Date.now()` time from which a call starts a refresh in the background (and still uses this token). */
  readonly refreshAt: number
}

/** The token cache. Synchronous: a cached token must cost a call one lookup, not a promise. */
export interface TokenStore {
  get: (key: string) => CachedToken | undefined
  set: (key: string, token: CachedToken) => void
  delete: (key: string) => void
}

/** The per-process store: a Map. */
export class MemoryTokenStore implements TokenStore {
  private readonly tokens = new Map<string, CachedToken>()

  get (key: string): CachedToken | undefined {
    return this.tokens.get(key)
  }

  set (key: string, token: CachedToken): void {
    this.tokens.set(key, token)
  }

  delete (key: string): void {
    this.tokens.delete(key)
  }
}

import { OAuth2TokenSource } from '../auth/oauth2'
import { AuthError, InvalidRequestError, stamp } from '../errors'
import type { CallOptions } from '../client-types'
import type { HttpResponse } from '../response'
import type { CallContext, Next, Policy, PolicyFactory, PolicySteps, ServiceRuntime } from './types'

/** CR, LF and NUL end or corrupt a header line. */
const kBadHeaderValue = /[\r\n\0]/

const kBearer = 'Bearer '

/**
 * The service's credentials on each attempt, and a call's own `token` / `auth: false` over them (priority: call
 * `token` > call `auth` > service `auth` > `defaults.auth`, merged at resolution). A fixed header (`bearer` string,
 * `basic`, `apiKey` in a header) needs nothing here: it is one of the service's request headers from start-up
 * (`fixedAuthHeader`, measured: a `setHeader` per attempt copied the headers and cost ~1 µs a call); this policy only
 * removes it for a call passing `token` or `auth: false`, and so for `forward`, whose header is one of the service's
 * `forwardHeaders`, copied from the inbound request once per request. A `bearer` function is called before each
 * attempt; an API key in the query is appended to the path of each attempt. OAuth2 takes its token from
 * `../auth/oauth2` (one source per service, shared by both chains) and resends once on a 401.
 *
 * A header the call sets itself (`headers: { authorization }`) wins over the service's scheme: call options
 * override service options.
 *
 * Sits above `redirect`: a hop reuses the attempt's headers, and `redirect` follows only hops that stay on the
 * service's origin and inside its base path, so credentials never go anywhere else. An API key in the query is not
 * added to a hop (its `Location` says the query).
 */
export const auth: PolicyFactory = (service, perCall) => {
  const a = service.options.auth
  if (a === undefined) return perCall ? callOnly(undefined) : undefined
  if (a.oauth2 !== undefined) return oauth2(tokenSource(service))
  if (a.bearer !== undefined) return bearerFunction(a.bearer)
  if (a.query !== undefined) return queryKey(a.query, a.value as string)
  // `forward` and a fixed header: already among the call's headers.
  return perCall ? callOnly(a.header) : undefined
}
auth.callOptions = ['token', 'auth']

/**
 * A service with no scheme of its own, or one whose header is already among the call's (`preset`: a fixed header or
 * `forward`): only the call's `token` / `auth: false` matter.
 */
function callOnly (preset: string | undefined): Policy {
  return (ctx, next) => {
    if (ctx.options.token === undefined && ctx.options.auth === undefined) return next(ctx)
    return overriddenThen(ctx, next, preset)
  }
}

/**
 * A `bearer` function, called as each attempt goes down. A function that answers with a string right away costs the
 * call no promise (the chain goes on below at once); one that answers with a promise is waited for (bounded by the
 * call's signal: a token fetch may be shared and go on, no call waits past its own limits).
 */
function bearerFunction (fn: () => string | Promise<string>): PolicySteps {
  return {
    enter (ctx, below) {
      const o = ctx.options
      if (o.token !== undefined || o.auth !== undefined) return overriddenThen(ctx, below, undefined)
      if (o.headers !== undefined && callSetsHeader(o.headers, 'authorization')) return undefined
      let token: unknown
      try {
        token = fn()
      } catch (err) {
        throw authError(ctx, 'the auth.bearer function failed', err)
      }
      if (!isThenable(token)) {
        ctx.setHeader('authorization', `Bearer ${usableBearer(ctx, token)}`)
        return undefined
      }
      return untilAborted(ctx, Promise.resolve(token)).then((fetched) => {
        ctx.setHeader('authorization', `Bearer ${usableBearer(ctx, fetched)}`)
        return below(ctx)
      }, (err: unknown) => {
        if (ctx.signal?.aborted === true) throw err // the call's own timeout or abort, not the function's failure
        throw authError(ctx, 'the auth.bearer function failed', err)
      })
    }
  }
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
}

/** What a `bearer` function gave, if it can be sent; else the call fails with an `AuthError`. */
function usableBearer (ctx: CallContext, token: unknown): string {
  if (typeof token !== 'string' || token === '' || kBadHeaderValue.test(token)) {
    throw authError(ctx, 'the auth.bearer function gave no usable token (expected a non-empty string without CR, LF or NUL)')
  }
  return token
}

/** The service's OAuth2 token source, one for both of its chains, closed with the service. */
function tokenSource (service: ServiceRuntime): OAuth2TokenSource {
  return service.shared('oauth2', () => {
    const settings = service.options.auth?.oauth2
    if (settings === undefined) throw new Error('unreachable: oauth2 without settings')
    // `tokenService` was checked at resolution; its client is taken per token request (it may be built after this one).
    const source = new OAuth2TokenSource(service.name, settings, service.log, (name) => service.client(name), service.injectedDispatcher)
    service.addStats('oauth2', () => ({ tokenRequests: source.requests }))
    service.onClose?.(() => { source.close().catch(() => {}) })
    return source
  })
}

/**
 * OAuth2: the cached token (no promise while it is fresh), and on a 401 one resend with a fresh token, for any
 * method (a 401 means the request was not processed) unless its body was a stream already sent. The token is dropped
 * only if it is still the cached one: a concurrent call may have replaced it already. A second 401 is the answer, and
 * so is a 401 the source says a resend cannot help (`invalidate`: moments after another 401 dropped a token).
 */
function oauth2 (source: OAuth2TokenSource): PolicySteps {
  // Steps, not a promise stage: a call with a cached token goes on below at once, and only a 401 takes a promise.
  return {
    enter (ctx, below) {
      const o = ctx.options
      if (o.token !== undefined || o.auth !== undefined) return overriddenThen(ctx, below, undefined)
      // The call's own header is sent as it is, and its 401 is the answer (`response` is not called for it).
      if (o.headers !== undefined && callSetsHeader(o.headers, 'authorization')) return below(ctx)
      const token = source.token()
      if (typeof token !== 'string') return stamped(ctx, token).then((fetched) => sendWithToken(ctx, below, source, fetched))
      ctx.setHeader('authorization', `Bearer ${token}`)
      return undefined
    },
    response (res, ctx, below) {
      if (res.status !== 401) return res
      // The token this attempt sent: the header `enter` set (nothing below changes it).
      const sent = ctx.headers.authorization
      return resendOn401(ctx, below, source, sent === undefined ? '' : sent.slice(kBearer.length), res)
    }
  }
}

function sendWithToken (ctx: CallContext, next: Next, source: OAuth2TokenSource, token: string): Promise<HttpResponse> {
  ctx.setHeader('authorization', `Bearer ${token}`)
  let answered: Promise<HttpResponse>
  try {
    answered = next(ctx)
  } catch (err) {
    return Promise.reject(err)
  }
  return answered.then((res) => res.status === 401 ? resendOn401(ctx, next, source, token, res) : res)
}

async function resendOn401 (ctx: CallContext, next: Next, source: OAuth2TokenSource, token: string, res: HttpResponse): Promise<HttpResponse> {
  // Dropped even when the call cannot be resent (a stream body already sent): the next call gets a fresh token.
  if (!source.invalidate(token) || !ctx.replayable) return res
  await res.discard()
  const fresh = await stamped(ctx, Promise.resolve(source.token()))
  ctx.setHeader('authorization', `Bearer ${fresh}`)
  return await next(ctx)
}

/** A token fetch whose `AuthError` gets the call's target. */
async function stamped (ctx: CallContext, token: Promise<string>): Promise<string> {
  try {
    return await untilAborted(ctx, token)
  } catch (err) {
    // The error is shared by every call waiting on the same fetch: each gets its own copy with its own target.
    if (err instanceof AuthError) {
      // The source's messages start with this service's name; one from `tokenService` names that service: kept whole.
      const prefix = `${ctx.service.name}: `
      const own = authError(ctx, err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message, err.cause)
      own.error = err.error
      own.error_description = err.error_description
      if (own.error === undefined) delete own.error
      if (own.error_description === undefined) delete own.error_description
      throw own
    }
    throw err
  }
}

/**
 * `promise`, or the call's abort reason once its signal aborts first (total timeout, deadline, caller gone): a token
 * fetch is shared by every waiting call and goes on, but no call waits for it past its own limits.
 */
function untilAborted<T> (ctx: CallContext, promise: Promise<T>): Promise<T> {
  const signal = ctx.signal
  if (signal === undefined) return promise
  if (signal.aborted) {
    promise.catch(() => {})
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      promise.catch(() => {})
      reject(signal.reason)
    }
    signal.on('abort', onAbort)
    promise.then((value) => {
      signal.removeListener('abort', onAbort)
      resolve(value)
    }, (err: unknown) => {
      signal.removeListener('abort', onAbort)
      reject(err)
    })
  })
}

function queryKey (param: string, value: string): Policy {
  const pair = `${encodeURIComponent(param)}=${encodeURIComponent(value)}`
  const shown = `${encodeURIComponent(param)}=***`
  return (ctx, next) => {
    const o = ctx.options
    if (o.token !== undefined || o.auth !== undefined) return overriddenThen(ctx, next, undefined)
    if (o.query !== undefined && callSetsQuery(o.query, param)) return next(ctx)
    const path = ctx.path
    const q = path.indexOf('?')
    ctx.path = path + (q === -1 ? '?' : q === path.length - 1 || path.endsWith('&') ? '' : '&') + pair
    // Each attempt appends the key to the call's own path (a redirect hop may have changed it meanwhile).
    let answered: Promise<HttpResponse>
    try {
      answered = next(ctx)
    } catch (err) {
      ctx.path = path
      return Promise.reject(err)
    }
    return answered.then((res) => {
      ctx.path = path
      // `res.url` shows the path as sent: every other query value, but not the key.
      res.meta.path = res.meta.path.replace(pair, shown)
      return res
    }, (err: unknown) => {
      ctx.path = path
      throw err
    })
  }
}

/**
 * The call's `token` (sent as `Authorization: Bearer`) or `auth: false` (nothing sent) instead of the service's
 * scheme, then the rest of the chain. A preset credential (fixed or forwarded) is removed unless the call set that
 * header itself.
 * Bad values reject the call with `InvalidRequestError`, without showing them.
 */
function overriddenThen (ctx: CallContext, next: Next, preset: string | undefined): Promise<HttpResponse> {
  const o = ctx.options
  try {
    if (o.token !== undefined) {
      const token: unknown = o.token
      if (typeof token !== 'string' || token === '' || kBadHeaderValue.test(token)) {
        throw invalidCall(ctx, 'the token call option must be a non-empty string without CR, LF or NUL')
      }
      if (preset !== undefined && preset !== 'authorization') removeHeader(ctx, preset)
      ctx.setHeader('authorization', `Bearer ${token}`)
    } else {
      if (o.auth !== false) throw invalidCall(ctx, 'the auth call option can only be false (send a token with the token call option)')
      if (preset !== undefined && (o.headers === undefined || !callSetsHeader(o.headers, preset))) removeHeader(ctx, preset)
    }
    return next(ctx)
  } catch (err) {
    return Promise.reject(err)
  }
}

/** Whether the call's own `headers` set `name` (lower-case): then it wins over the service's scheme. */
function callSetsHeader (headers: NonNullable<CallOptions['headers']>, name: string): boolean {
  for (const key in headers) if (headers[key] !== undefined && key.toLowerCase() === name) return true
  return false
}

function callSetsQuery (query: NonNullable<CallOptions['query']>, name: string): boolean {
  if (query instanceof URLSearchParams) return query.has(name)
  return Object.hasOwn(query, name) && query[name] !== undefined && query[name] !== null
}

function removeHeader (ctx: CallContext, name: string): void {
  if (ctx.headers[name] === undefined) return
  const { [name]: _removed, ...rest } = ctx.headers
  ctx.headers = rest
}

function target (ctx: CallContext): { service: string, method: string, path: string } {
  return { service: ctx.service.name, method: ctx.method, path: ctx.path }
}

function invalidCall (ctx: CallContext, problem: string): InvalidRequestError {
  return stamp(new InvalidRequestError(`${ctx.service.name}: ${problem}`), target(ctx))
}

function authError (ctx: CallContext, problem: string, cause?: unknown): AuthError {
  const err = cause === undefined ? new AuthError(`${ctx.service.name}: ${problem}`) : new AuthError(`${ctx.service.name}: ${problem}`, { cause })
  return stamp(err, target(ctx))
}

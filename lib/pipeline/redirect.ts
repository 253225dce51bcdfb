import type { HttpResponse } from '../response'
import { isSafeTarget } from '../request-target'
import type { CallContext, Next, PolicyFactory, PolicySteps } from './types'

const kRedirects = new Set([301, 302, 303, 307, 308])

/** The path of `location` when it points at the same origin and stays inside the base path, else `undefined`. */
function sameOriginPath (location: string, origin: string, currentPath: string, basePath: string): string | undefined {
  let url: URL
  try {
    url = new URL(location, origin + currentPath)
  } catch {
    return undefined
  }
  if (url.origin !== origin) return undefined
  // The raw Location, not the URL parser's normalised path: `/api/..%2fadmin` must meet the same checks a caller's
  // path does.
  const raw = location.startsWith('/') && !location.startsWith('//') ? location.split('#')[0] : url.pathname + url.search
  if (!isSafeTarget(raw)) return undefined
  if (basePath !== '' && url.pathname !== basePath && !url.pathname.startsWith(basePath + '/')) return undefined
  return url.pathname + url.search
}

/**
 * Follows up to `followRedirects` same-origin redirects. A redirect to another origin (or outside the base path)
 * is never followed: the 3xx response is returned, so credentials cannot leak to another host. 303, and 301/302
 * after a POST, continue as GET without a body; 307/308 repeat the method and body, unless the body was a stream.
 */
export const redirect: PolicyFactory = (service) => {
  const max = service.options.followRedirects
  if (max <= 0) return undefined
  const { basePath } = service.options
  // Steps (`./chain`): an answer that is no redirect goes back up with no promise of this policy's.
  const steps: PolicySteps = {
    enter: () => undefined,
    response: (res, ctx, below) => kRedirects.has(res.status) ? follow(res, ctx, below, max, basePath) : res
  }
  return steps
}

/** Follows the redirect `first` and those after it, up to `max` hops in all. */
async function follow (first: HttpResponse, ctx: CallContext, next: Next, max: number, basePath: string): Promise<HttpResponse> {
  let res = first
  for (let hops = 0; hops < max && kRedirects.has(res.status); hops++) {
    const location = res.headers.location
    if (typeof location !== 'string') return res
    const path = sameOriginPath(location, res.meta.origin, ctx.path, basePath)
    if (path === undefined) return res
    const asGet = res.status === 303 || ((res.status === 301 || res.status === 302) && ctx.method === 'POST')
    if (!asGet && !ctx.replayable && ctx.body !== null) return res
    await res.discard()
    ctx.path = path
    if (asGet) {
      ctx.method = ctx.method === 'HEAD' ? 'HEAD' : 'GET'
      ctx.body = null
      if (ctx.headers['content-type'] !== undefined || ctx.headers['content-length'] !== undefined) {
        const { 'content-type': _t, 'content-length': _l, ...rest } = ctx.headers
        ctx.headers = rest
      }
    }
    res = await next(ctx)
  }
  return res
}

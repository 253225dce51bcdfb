import { Agent, BalancedPool, Pool, interceptors, type Dispatcher } from 'undici'
import type { ResolvedService } from './config/resolved'
import { breakerUpstreams } from './upstream-origins'
import { createProxyDispatcher } from './proxy'

/** The undici options every pool of a service shares. */
function poolOptions (o: ResolvedService): Pool.Options {
  const tls = o.tls
  return {
    connections: o.connections,
    pipelining: o.pipelining,
    keepAliveTimeout: o.keepAliveTimeout,
    keepAliveMaxTimeout: o.keepAliveMaxTimeout,
    allowH2: o.allowH2,
    headersTimeout: o.timeout.headers,
    bodyTimeout: o.timeout.body,
    socketPath: o.socketPath,
    connect: {
      timeout: o.timeout.connect,
      ...(tls !== undefined
        ? {
            rejectUnauthorized: tls.rejectUnauthorized,
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
            passphrase: tls.passphrase,
            servername: tls.servername
          }
        : {})
    }
  }
}

/** The Agent's pools are `Pool`s even for `connections: 1` (undici's default makes a `Client`), as elsewhere here. */
function poolFactory (origin: string | URL, options: object): Dispatcher {
  return new Pool(origin, options)
}

/**
 * Whether the service's dispatcher is one plain `Pool`, which the service makes on its first call rather than when it
 * opens: an idle pool holds about 25 KB (undici's request queue preallocates 2,048 slots), the most of what 1,000
 * idle services would cost, and making one cannot fail once the options are valid. The others (proxy, DNS caching,
 * several upstreams) are made when the service opens, so a problem with them shows at start-up.
 */
export function poolMadeOnFirstCall (o: ResolvedService): boolean {
  return o.proxy === undefined && o.dns === undefined && o.origins.length === 1
}

/**
 * Creates the dispatcher of a service: a `Pool` for one upstream, a `BalancedPool` for several with `breaker: false`,
 * and with `dns` caching an `Agent` composed with undici's `dns` interceptor (it rewrites the origin to a resolved
 * address, so it needs an Agent that opens one pool per address). With `proxy`, undici's ProxyAgent (see `./proxy`; a proxy takes
 * one `baseUrl` only).
 *
 * Several upstreams and a breaker: an `Agent` (one `Pool` per origin, same options), since the breaker policy then
 * picks the upstream of each attempt and the transport names it in `origin` (see `./pipeline/upstreams`).
 */
export function createDispatcher (o: ResolvedService): Dispatcher {
  const options = poolOptions(o)
  if (o.proxy !== undefined) return createProxyDispatcher(o, options)
  if (o.dns !== undefined) {
    const agent = new Agent(options)
    return agent.compose(interceptors.dns({ maxTTL: o.dns.ttl, maxItems: o.dns.maxItems, dualStack: o.dns.dualStack }))
  }
  if (o.origins.length > 1) {
    return breakerUpstreams(o) !== undefined ? new Agent({ ...options, factory: poolFactory }) : new BalancedPool(o.origins, options)
  }
  return new Pool(o.origins[0], options)
}

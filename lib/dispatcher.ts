import { Agent, BalancedPool, Pool, interceptors, type Dispatcher } from 'undici'
import type { ResolvedService } from './config/resolved'
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

/**
 * Creates the dispatcher of a service: a `Pool` for one upstream, a `BalancedPool` for several, and with `dns`
 * caching an `Agent` composed with undici's `dns` interceptor (it rewrites the origin to a resolved address, so it
 * needs an Agent that opens one pool per address). With `proxy`, undici's ProxyAgent (see `./proxy`).
 */
export function createDispatcher (o: ResolvedService): Dispatcher {
  const options = poolOptions(o)
  if (o.proxy !== undefined) return createProxyDispatcher(o, options)
  if (o.dns !== undefined) {
    const agent = new Agent(options)
    return agent.compose(interceptors.dns({ maxTTL: o.dns.ttl, maxItems: o.dns.maxItems, dualStack: o.dns.dualStack }))
  }
  if (o.origins.length > 1) return new BalancedPool(o.origins, options)
  return new Pool(o.origins[0], options)
}

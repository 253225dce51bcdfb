import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import Fastify from 'fastify'
import httpServices, {
  type HttpServicesOptions, type ServiceStatus, type StatusPageOptions, type StatusSnapshot, type UpstreamBreakerStatus
} from '../../index'

// `statusPage`: off by default; `true`, or a path and route options (an onRequest guard).
expectAssignable<HttpServicesOptions>({ statusPage: true })
expectAssignable<HttpServicesOptions>({ statusPage: false })
expectAssignable<HttpServicesOptions>({ statusPage: { path: '/ops/services' } })
expectAssignable<StatusPageOptions>({
  routeOpts: {
    onRequest: async (request, reply) => {
      if (request.headers.authorization !== 'Bearer x') await reply.code(401).send()
    },
    logLevel: 'warn'
  }
})
expectNotAssignable<HttpServicesOptions>({ statusPage: '/services' })
expectNotAssignable<StatusPageOptions>({ path: 1 })
expectNotAssignable<StatusPageOptions>({ pth: '/x' })

const app = Fastify()
app.register(httpServices, { services: {}, statusPage: { path: '/_services', routeOpts: { onRequest: (_req, _reply, done) => done() } } })
expectError(app.register(httpServices, { statusPage: { path: true } }))

// The JSON's shape, for scripts.
declare const snap: StatusSnapshot
expectType<string>(snap.time)
expectType<ServiceStatus[]>(snap.services)
const s = snap.services[0]
expectType<number>(s.requestsPerSecond)
expectType<number | null>(s.latency.p99)
expectType<'closed' | 'open' | 'halfOpen' | undefined>(s.breaker?.state)
expectType<UpstreamBreakerStatus[] | undefined>(s.breaker?.upstreams)
expectType<number | null | undefined>(s.cache?.hitRatio)
expectType<number[]>(s.series.requests)

import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import Redis from 'ioredis'
import {
  createHttpServices, type CacheAsideOptions, type CacheOptions, type CacheStatus, type HttpResponse, type HttpServicesOptions, type RedisClient,
  type RedisOptions
} from '../../index'

declare const res: HttpResponse
expectType<CacheStatus | undefined>(res.cache)
expectAssignable<CacheStatus>('hit')
expectAssignable<CacheStatus>('revalidated')
expectAssignable<CacheStatus>('miss')
expectAssignable<CacheStatus>('stale')
expectNotAssignable<CacheStatus>('fresh')

// `cache` per service or in defaults: `true` or the options.
expectAssignable<HttpServicesOptions>({ defaults: { cache: true }, services: { a: { baseUrl: 'http://x', cache: false } } })
expectAssignable<CacheOptions>({ store: 'redis', maxEntrySize: 1024, maxSize: 1 << 20, staleIfError: 60_000, type: 'private' })
expectNotAssignable<CacheOptions>({ store: 'disk' })
expectNotAssignable<CacheOptions>({ type: 'public' })

// `redis`: a URL, an ioredis client (what @fastify/redis decorates), or the options.
const client = new Redis({ lazyConnect: true })
expectAssignable<RedisClient>(client)
expectAssignable<HttpServicesOptions>({ redis: 'redis://127.0.0.1:6379' })
expectAssignable<HttpServicesOptions>({ redis: client })
expectAssignable<HttpServicesOptions>({ redis: { client, keyPrefix: 'app:' } })
expectAssignable<RedisOptions>({ url: 'redis://127.0.0.1:6379', keyPrefix: 'app:', timeout: 50 })
expectError(createHttpServices({ redis: 6379 }))

// Cache-aside: `fastify.httpServices.cache` / `services.cache`.
const services = createHttpServices({ services: {} })
expectType<Promise<{ id: number }>>(services.cache.getOrFetch('k', async () => ({ id: 1 }), { ttl: 1000, tags: ['t'], forceRefresh: true }))
expectType<Promise<string | undefined>>(services.cache.get<string>('k'))
expectType<Promise<void>>(services.cache.set('k', 1, { ttl: 10 }))
expectType<Promise<number>>(services.cache.invalidatePattern('user:*'))
expectType<Promise<number>>(services.cache.invalidateTag('t'))
expectType<'redis' | 'memory'>(services.cache.store)
expectAssignable<CacheAsideOptions>({ ttl: 1 })
expectType<Promise<{ id: number }>>(services.cache.getOrFetch('k', async () => ({ id: 1 }), { ttl: 1000, staleIfError: 86_400_000 }))
expectType<Promise<string | undefined>>(services.cache.get<string>('k', { stale: true }))
expectType<Promise<void>>(services.cache.set('k', 1, { ttl: 10, staleIfError: 1000 }))
expectError(services.cache.get('k', { stale: 'yes' }))
expectError(services.cache.set('k', 1, { forceRefresh: true }))

import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import Redis from 'ioredis'
import {
  createHttpServices, type CacheOptions, type CacheStatus, type HttpResponse, type HttpServicesOptions, type RedisClient,
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

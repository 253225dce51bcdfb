import t from 'tap'
import { createHttpServices, InvalidOptionsError } from '../../index'
import { loadIoredis } from '../../lib/redis/connection'
import { CacheHandler, MemoryCacheStore, isEtagUsable, makeCacheKey, parseCacheControlHeader } from '../../lib/cache/undici-cache'

t.test('bad redis and cache options fail at registration, naming the key', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ redis: 'http://cache:6379' }, 'redis: expected a redis:// or rediss:// URL, got "http://cache:6379"'],
    [{ redis: 42 }, 'redis: expected a redis:// URL, an ioredis client or an object of redis options, got 42'],
    [{ redis: { url: 'redis://a', client: {} } }, 'redis.client: expected an ioredis client (with getBuffer, set, del and quit), got {}'],
    [{ redis: { keyPrefix: 'x:' } }, 'redis: takes url or client, exactly one of the two'],
    [{ redis: { url: 'redis://a', timeout: 0 } }, 'redis.timeout: expected a positive number of milliseconds, got 0'],
    [{ redis: { url: 'redis://a', prefix: 'x' } }, 'redis.prefix: unknown option (expected one of: url, client, keyPrefix, timeout)'],
    [{ services: { a: { baseUrl: 'http://x', cache: { store: 'redis' } } } }, "services.a.cache.store: 'redis' needs the redis option (a Redis connection)"],
    [{ services: { a: { baseUrl: 'http://x', cache: { type: 'public' } } } }, 'services.a.cache.type: expected one of "shared", "private", got "public"'],
    [{ services: { a: { baseUrl: 'http://x', cache: { maxEntrySize: 0 } } } }, 'services.a.cache.maxEntrySize: expected an integer >= 1, got 0'],
    [{ services: { a: { baseUrl: 'http://x', cache: 'yes' } } }, 'services.a.cache: expected a boolean or an object, got "yes"'],
    [{ defaults: { cache: { staleIfError: -1 } } }, 'defaults.cache.staleIfError: expected a number of milliseconds >= 0, got -1']
  ]
  for (const [options, message] of cases) {
    t.throws(() => createHttpServices(options as never), { message, code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS' }, message)
  }
})

t.test('defaults.cache merges one level with a service', async (t) => {
  const services = createHttpServices({
    defaults: { cache: { staleIfError: 5000 } },
    services: { a: { baseUrl: 'http://127.0.0.1:1', cache: { type: 'private' } }, b: { baseUrl: 'http://127.0.0.1:1', cache: false } }
  })
  t.same(services.resolved.services.get('a')?.cache, { store: 'memory', maxEntrySize: 5242880, maxSize: 104857600, staleIfError: 5000, type: 'private' })
  t.equal(services.resolved.services.get('b')?.cache, undefined)
  t.notOk(services.stats().b.policies.includes('cache'), 'a service without cache has no cache policy')
})

t.test('a missing ioredis is a clear registration error', async (t) => {
  t.throws(() => loadIoredis('ioredis-that-is-not-installed'), {
    message: 'redis: needs the ioredis-that-is-not-installed package, which is not installed: npm install ioredis-that-is-not-installed'
  })
  t.ok(new InvalidOptionsError('x') instanceof Error)
})

t.test("undici's cache internals this library requires are where it expects them", async (t) => {
  t.equal(typeof CacheHandler, 'function')
  t.equal(typeof MemoryCacheStore, 'function')
  t.same(parseCacheControlHeader('public, max-age=60'), { public: true, 'max-age': 60 })
  t.equal(isEtagUsable('"v1"'), true)
  t.match(makeCacheKey({ origin: 'http://a', method: 'GET', path: '/x', headers: {} }), { origin: 'http://a', method: 'GET', path: '/x' })
})

import dns from 'node:dns'
import t from 'tap'
import type * as Library from '../../index'
import { sendJson, startServer } from '../helpers/server'

// undici's dns interceptor takes `lookup` from node:dns when it loads, so the count is installed before the library
// (and undici with it) is loaded below. Without the interceptor, every new connection to `localhost` is looked up by
// node:net, which reads `dns.lookup` at each connect: the same counter sees those.
const lookups: string[] = []
const undiciLoaded = Object.keys(require.cache).some((file) => /[\\/]node_modules[\\/]undici[\\/]/.test(file))
const realLookup = dns.lookup
dns.lookup = function countedLookup (this: unknown, hostname: string, ...rest: unknown[]) {
  lookups.push(hostname)
  return (realLookup as (...args: unknown[]) => unknown).call(this, hostname, ...rest)
} as typeof dns.lookup
t.teardown(() => { dns.lookup = realLookup })

t.test('dns caching: calls within the TTL make one lookup, though each opens a new connection', async (t) => {
  t.notOk(undiciLoaded, 'undici was not loaded before the lookups were counted')
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only now that the lookups are counted
  const { createHttpServices } = require('../../index') as typeof Library
  // `connection: close`: every call needs a new connection, which without the cache means a new lookup.
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }, { connection: 'close' }))
  const services = createHttpServices({
    defaults: { retry: false },
    services: { api: { baseUrl: `http://localhost:${server.port}`, dns: { ttl: 60_000, dualStack: false } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const before = lookups.filter((h) => h === 'localhost').length
  const calls = 5
  for (let i = 0; i < calls; i++) t.same(await api.getJson('/x'), { ok: true })
  t.equal(server.requests.length, calls)
  t.equal(lookups.filter((h) => h === 'localhost').length - before, 1, `${calls} calls looked localhost up once`)
})

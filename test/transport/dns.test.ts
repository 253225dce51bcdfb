import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('dns caching (undici dns interceptor) still reaches the server and keeps the Host header of the baseUrl', async (t) => {
  const server = await startServer((req, res, seen) => sendJson(res, 200, { host: seen.headers.host, url: seen.url, from: req.socket.remoteAddress }))
  const services = createHttpServices({
    defaults: { retry: false },
    services: { api: { baseUrl: `http://localhost:${server.port}/v1`, dns: { ttl: 1000, dualStack: false } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  for (let i = 0; i < 3; i++) {
    t.same(await api.getJson('/x', { query: { i } }), { host: `localhost:${server.port}`, url: `/v1/x?i=${i}`, from: '127.0.0.1' })
  }
  t.same(services.get('api').options.dns, { ttl: 1000, maxItems: 100, dualStack: false })
})

t.test('dns is off by default; true uses the documented defaults', async (t) => {
  const off = createHttpServices({ services: { api: { baseUrl: 'http://localhost:1' } } })
  t.equal(off.get('api').options.dns, undefined)
  const on = createHttpServices({ services: { api: { baseUrl: 'http://localhost:1', dns: true } } })
  t.same(on.get('api').options.dns, { ttl: 10000, maxItems: 100, dualStack: true })
})

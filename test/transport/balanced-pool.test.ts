import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('a list of baseUrls spreads calls over every upstream (BalancedPool)', async (t) => {
  const a = await startServer((_req, res, seen) => sendJson(res, 200, { server: 'a', url: seen.url }))
  const b = await startServer((_req, res, seen) => sendJson(res, 200, { server: 'b', url: seen.url }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: [a.url, b.url] } } })
  await services.open()
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  const api = services.client('api')

  const seen = { a: 0, b: 0 }
  for (let i = 0; i < 20; i++) {
    const got = await api.getJson<{ server: 'a' | 'b', url: string }>('/ping', { query: { i } })
    t.equal(got.url, `/ping?i=${i}`)
    seen[got.server]++
  }
  t.ok(seen.a > 0, `server a got ${seen.a} calls`)
  t.ok(seen.b > 0, `server b got ${seen.b} calls`)
  t.equal(a.requests.length + b.requests.length, 20, 'each call reached exactly one upstream')

  const stats = services.stats().api
  t.same(stats.origins, [a.url, b.url])
  t.equal(stats.requests, 20)
  t.type(stats.pool?.connected, 'number', 'pool counters are reported')
})

t.test('concurrent calls are spread too', async (t) => {
  const a = await startServer((_req, res) => { setTimeout(() => res.end('a'), 10) })
  const b = await startServer((_req, res) => { setTimeout(() => res.end('b'), 10) })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: [a.url, b.url], connections: 2 } } })
  await services.open()
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  const api = services.client('api')
  const answers = await Promise.all(Array.from({ length: 16 }, async () => await (await api.get('/')).text()))
  t.ok(answers.includes('a') && answers.includes('b'), `both upstreams answered: ${answers.join('')}`)
})

t.test('the base path of the first baseUrl applies to every upstream', async (t) => {
  const a = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url }))
  const b = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: [`${a.url}/v1`, `${b.url}/v1`] } } })
  await services.open()
  t.teardown(async () => { await services.close(); await a.close(); await b.close() })
  const api = services.client('api')
  for (let i = 0; i < 10; i++) t.same(await api.getJson('/x'), { url: '/v1/x' })
  t.ok(a.requests.length > 0 && b.requests.length > 0)
})

import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('credentials follow a redirect only while it stays inside the service\'s base path', async (t) => {
  const other = await startServer((_req, res) => sendJson(res, 200, {}))
  const server = await startServer((req, res) => {
    const to: Record<string, string> = {
      '/api/inside': '/api/target',
      '/api/outside': '/admin/target',
      '/api/dotdot': '/api/../admin',
      '/api/cross': `${other.url}/api/target`
    }
    const path = (req.url ?? '').split('?')[0]
    if (to[path] !== undefined) {
      res.statusCode = 302
      res.setHeader('location', to[path])
      res.end()
      return
    }
    sendJson(res, 200, {})
  })
  const registry = createHttpServices({
    defaults: { retry: false, followRedirects: 3 },
    services: {
      bearer: { baseUrl: `${server.url}/api`, auth: { bearer: 'redir-secret' } },
      query: { baseUrl: `${server.url}/api`, auth: { apiKey: { value: 'redir-key', query: 'key' } } }
    }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close(); await other.close() })

  const inside = await registry.client('bearer').get('/inside')
  t.equal(inside.status, 200)
  await inside.discard()
  t.same(server.requests.map((r) => [r.url, r.headers.authorization]), [
    ['/api/inside', 'Bearer redir-secret'],
    ['/api/target', 'Bearer redir-secret']
  ], 'a hop inside the base path keeps them')

  for (const path of ['/outside', '/dotdot', '/cross']) {
    const res = await registry.client('bearer').get(path)
    t.equal(res.status, 302, `${path}: the redirect is returned, not followed`)
    await res.discard()
  }
  t.notOk(server.requests.some((r) => r.url.startsWith('/admin')), 'nothing was sent outside the base path')
  t.equal(other.requests.length, 0, 'nothing was sent to the other origin')

  server.requests.length = 0
  const hop = await registry.client('query').get('/inside')
  await hop.discard()
  t.same(server.requests.map((r) => r.url), ['/api/inside?key=redir-key', '/api/target'], 'a query key is not added to a hop: its Location says the query')
})

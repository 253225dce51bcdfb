import { Readable } from 'node:stream'
import t from 'tap'
import { createHttpServices, type ServiceOptions } from '../../index'
import { sendJson, startServer, type Handler } from '../helpers/server'

async function setup (t: tap.Test, handler: Handler, options: Partial<ServiceOptions> = {}, path = '') {
  const server = await startServer(handler)
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url + path, ...options } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, api: services.client('api') }
}

function redirecting (routes: Record<string, [number, string]>): Handler {
  return (req, res, seen) => {
    const to = routes[req.url ?? '']
    if (to !== undefined) {
      res.writeHead(to[0], { location: to[1], 'content-type': 'text/plain' })
      res.end('moved')
      return
    }
    sendJson(res, 200, { method: seen.method, url: seen.url, body: seen.body, auth: seen.headers.authorization ?? null })
  }
}

t.test('redirects are not followed by default: the 3xx is returned', async (t) => {
  const { api, server } = await setup(t, redirecting({ '/old': [301, '/new'] }))
  const res = await api.get('/old')
  t.equal(res.status, 301)
  t.equal(res.headers.location, '/new')
  t.equal(await res.text(), 'moved')
  t.equal(server.requests.length, 1)
})

t.test('followRedirects follows same-origin redirects, keeping Authorization on the same origin', async (t) => {
  const { api, server } = await setup(t, redirecting({ '/a': [302, '/b'], '/b': [307, '/c?x=1'] }), { followRedirects: 3 })
  const res = await api.get('/a', { headers: { authorization: 'Bearer t' } })
  t.equal(res.status, 200)
  t.same(await res.json(), { method: 'GET', url: '/c?x=1', body: '', auth: 'Bearer t' })
  t.equal(res.url, `${server.url}/c?x=1`, 'url is the final one')
  t.same(server.requests.map((r) => r.url), ['/a', '/b', '/c?x=1'])
})

t.test('an absolute Location on the same origin is followed', async (t) => {
  let origin = ''
  const { api, server } = await setup(t, (req, res, seen) => {
    if (req.url === '/a') { res.writeHead(301, { location: `${origin}/b` }); res.end(); return }
    sendJson(res, 200, { url: seen.url })
  }, { followRedirects: 1 })
  origin = server.url
  t.same(await api.getJson('/a'), { url: '/b' })
})

t.test('a cross-origin redirect is not followed: the 3xx is returned and the other server sees nothing', async (t) => {
  const other = await startServer((_req, res) => { res.end('other') })
  t.teardown(async () => await other.close())
  const { api, server } = await setup(t, redirecting({ '/go': [302, `${other.url}/steal`], '/proto': [301, '//127.0.0.1:1/x'] }), { followRedirects: 5 })
  const res = await api.get('/go', { headers: { authorization: 'Bearer secret', cookie: 'sid=1', 'x-api-key': 'k' } })
  t.equal(res.status, 302, 'the redirect is handed back')
  t.equal(res.headers.location, `${other.url}/steal`)
  await res.dump()
  const proto = await api.get('/proto', { headers: { authorization: 'Bearer secret' } })
  t.equal(proto.status, 301, 'a protocol-relative Location is another origin too')
  await proto.dump()
  t.equal(other.requests.length, 0, 'the other origin saw nothing, so no Authorization reached it')
  t.equal(server.requests.length, 2)
})

t.test('a redirect to the same host on another port or scheme is another origin', async (t) => {
  const other = await startServer((_req, res) => { res.end('other') })
  t.teardown(async () => await other.close())
  const { api } = await setup(t, redirecting({ '/port': [307, `http://127.0.0.1:${other.port}/x`], '/scheme': [307, 'https://127.0.0.1/x'] }), { followRedirects: 5 })
  t.equal((await api.get('/port', { throwHttpErrors: false })).status, 307)
  t.equal((await api.get('/scheme', { throwHttpErrors: false })).status, 307)
  t.equal(other.requests.length, 0)
})

t.test('a redirect outside the base path is not followed', async (t) => {
  const { api, server } = await setup(t, redirecting({ '/v1/a': [302, '/admin'], '/v1/b': [302, '/v1/../admin'] }), { followRedirects: 3 }, '/v1')
  t.equal((await api.get('/a')).status, 302)
  t.equal((await api.get('/b')).status, 302)
  t.same(server.requests.map((r) => r.url), ['/v1/a', '/v1/b'])
})

t.test('303, and 301/302 after a POST, continue as GET without the body', async (t) => {
  const { api } = await setup(t, redirecting({ '/303': [303, '/done'], '/302': [302, '/done'], '/301': [301, '/done'] }), { followRedirects: 1 })
  for (const from of ['/303', '/302', '/301']) {
    const got = await (await api.post(from, { json: { a: 1 } })).json<{ method: string, body: string }>()
    t.same(got, { method: 'GET', url: '/done', body: '', auth: null }, `${from}: GET without a body`)
  }
})

t.test('307 and 308 repeat the method and the body', async (t) => {
  const { api } = await setup(t, redirecting({ '/307': [307, '/done'], '/308': [308, '/done'] }), { followRedirects: 1 })
  for (const from of ['/307', '/308']) {
    t.same(await (await api.put(from, { json: { a: 1 } })).json(), { method: 'PUT', url: '/done', body: '{"a":1}', auth: null }, from)
  }
})

t.test('a 307 after a stream body is not followed (the body cannot be sent twice)', async (t) => {
  const { api, server } = await setup(t, redirecting({ '/307': [307, '/done'] }), { followRedirects: 1 })
  const res = await api.post('/307', { body: Readable.from([Buffer.from('once')]) })
  t.equal(res.status, 307)
  await res.dump()
  t.equal(server.requests.length, 1)
})

t.test('at most followRedirects hops are followed; the last 3xx is returned', async (t) => {
  const { api, server } = await setup(t, redirecting({ '/1': [302, '/2'], '/2': [302, '/3'], '/3': [302, '/4'] }), { followRedirects: 2 })
  const res = await api.get('/1')
  t.equal(res.status, 302)
  t.equal(res.headers.location, '/4')
  await res.dump()
  t.same(server.requests.map((r) => r.url), ['/1', '/2', '/3'])
})

t.test('a redirect whose target escapes the base path through an encoded dot segment is not followed', async (t) => {
  const s = await startServer((req, res) => {
    if (req.url === '/api/start') {
      res.writeHead(302, { location: '/api/..%2fadmin/secrets' })
      res.end()
      return
    }
    res.end('reached ' + req.url)
  })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: s.url + '/api', followRedirects: 3 } } })
  await services.open()
  t.teardown(async () => { await services.close(); await s.close() })
  const res = await services.client('api').get('/start', { throwHttpErrors: false })
  t.equal(res.status, 302, 'the 3xx is returned')
  await res.dump()
  t.same(s.requests.map((r) => r.url), ['/api/start'], 'the escaping target was never requested')
})

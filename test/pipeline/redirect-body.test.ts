import type { Socket } from 'node:net'
import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer, type Handler } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

/** A service following redirects over one connection, and the sockets its server saw open and close. */
async function setup (t: tap.Test, handler: Handler) {
  const sockets: Socket[] = []
  const closed = new Set<Socket>()
  const server = await startServer((req, res, seen) => {
    if (!sockets.includes(req.socket)) {
      sockets.push(req.socket)
      req.socket.once('close', () => closed.add(req.socket))
    }
    return handler(req, res, seen)
  })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, connections: 1, followRedirects: 3, retry: false, breaker: false, timeout: { total: 5000 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return { server, sockets, closed, api: services.client('api') }
}

t.test('a followed redirect\'s small body is read to its end: one connection carries every hop', async (t) => {
  const { api, server, sockets } = await setup(t, (req, res, seen) => {
    if (req.url === '/a') {
      res.writeHead(302, { location: '/b', 'content-type': 'text/plain', 'content-length': 5 })
      res.end('moved')
    } else if (req.url === '/b') {
      // Chunked, ending a little after its first bytes: a body dropped rather than read would take its connection.
      res.writeHead(307, { location: '/c', 'content-type': 'text/plain' })
      res.write('moved ')
      setTimeout(() => res.end('again'), 30)
    } else {
      sendJson(res, 200, { url: seen.url })
    }
  })
  t.same(await api.getJson('/a'), { url: '/c' })
  t.same(server.requests.map((r) => r.url), ['/a', '/b', '/c'])
  t.equal(sockets.length, 1, 'every hop went over the one connection')
})

t.test('a followed redirect\'s large body is dropped, not read: the next hop goes out on a new connection', async (t) => {
  const { api, sockets, closed } = await setup(t, (req, res, seen) => {
    if (req.url === '/a') {
      const body = Buffer.alloc(1024 * 1024, 'x')
      res.writeHead(301, { location: '/b', 'content-type': 'text/plain', 'content-length': body.length })
      res.end(body)
    } else {
      sendJson(res, 200, { url: seen.url })
    }
  })
  t.same(await api.getJson('/a'), { url: '/b' })
  t.equal(sockets.length, 2)
  await waitUntil('the redirect\'s connection is closed', () => closed.has(sockets[0]), 2000)
  t.notOk(closed.has(sockets[1]), 'the answer\'s connection is kept')
})

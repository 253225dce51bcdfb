import Fastify from 'fastify'
import t from 'tap'
import httpServices, { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('deadlineHeaders sends the remaining milliseconds and the attempt number on each attempt', async (t) => {
  let hits = 0
  const server = await startServer((_req, res) => {
    hits++
    sendJson(res, hits === 1 ? 503 : 200, {})
  })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, timeout: 5000, deadlineHeaders: true, retry: { delay: () => 50 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const res = await services.client('api').get('/x')
  t.equal(res.attempts, 2)
  const [first, second] = server.requests
  const left = (i: number): number => Number(server.requests[i].headers['x-request-timeout-ms'])
  t.equal(first.headers['x-attempt'], '1')
  t.equal(second.headers['x-attempt'], '2')
  t.ok(left(0) <= 5000 && left(0) > 4000, `first attempt: ${left(0)} ms left`)
  t.ok(left(1) <= left(0) - 50, `second attempt: ${left(1)} ms left, the backoff sleep taken off`)
})

t.test('without a deadline only the attempt is sent; an attempt timeout bounds the remaining time', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({
    services: {
      open: { baseUrl: server.url, deadlineHeaders: true },
      bounded: { baseUrl: server.url, timeout: { attempt: 300, total: 60000 }, deadlineHeaders: true }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await services.client('open').get('/x')
  await services.client('bounded').get('/x')
  const [open, bounded] = server.requests
  t.equal(open.headers['x-request-timeout-ms'], undefined, 'no deadline: nothing to announce')
  t.equal(open.headers['x-attempt'], '1')
  const left = Number(bounded.headers['x-request-timeout-ms'])
  t.ok(left <= 300 && left > 200, `the attempt may take ${left} ms, not the call's minute`)
})

t.test('header names can be changed or left out, and the option is off by default', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const services = createHttpServices({
    services: {
      renamed: { baseUrl: server.url, timeout: 1000, deadlineHeaders: { remaining: 'Grpc-Timeout-Ms', attempt: false } },
      plain: { baseUrl: server.url, timeout: 1000 }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  await services.client('renamed').get('/x')
  await services.client('plain').get('/x')
  const [renamed, plain] = server.requests
  t.ok(Number(renamed.headers['grpc-timeout-ms']) > 0)
  t.equal(renamed.headers['x-attempt'], undefined)
  t.equal(renamed.headers['x-request-timeout-ms'], undefined)
  t.equal(plain.headers['x-request-timeout-ms'], undefined)
  t.equal(plain.headers['x-attempt'], undefined)
})

t.test('the inbound request\'s deadline travels on to the upstream', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const app = Fastify()
  await app.register(httpServices, {
    deadlineHeader: 'x-request-timeout-ms',
    services: { api: { baseUrl: server.url, deadlineHeaders: true } }
  })
  app.get('/', async (request) => request.httpClient('api').getJson('/x'))
  t.teardown(async () => { await app.close(); await server.close() })
  const reply = await app.inject({ url: '/', headers: { 'x-request-timeout-ms': '800' } })
  t.equal(reply.statusCode, 200)
  const left = Number(server.requests[0].headers['x-request-timeout-ms'])
  t.ok(left <= 800 && left > 0, `the upstream was told ${left} ms`)
})

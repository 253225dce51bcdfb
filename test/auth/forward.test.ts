import Fastify from 'fastify'
import t from 'tap'
import httpServices, { type CallOptions, type HttpServicesOptions } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test, services: HttpServicesOptions['services']) {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const app = Fastify()
  await app.register(httpServices, {
    defaults: { retry: false },
    services: Object.fromEntries(Object.entries(services ?? {}).map(([name, o]) => [name, { ...o, baseUrl: server.url }]))
  })
  // Calls `service` with the options the test passes in the `x-call` header (JSON), from inside a request.
  app.get('/call/:service', async (request) => {
    const raw = request.headers['x-call']
    const options = typeof raw === 'string' ? JSON.parse(raw) as CallOptions : undefined
    await request.httpClient((request.params as { service: string }).service).get('/down', options)
    return { ok: true }
  })
  t.teardown(async () => { await app.close(); await server.close() })
  return { server, app }
}

t.test('forward: true sends the inbound Authorization to that service only', async (t) => {
  const { server, app } = await setup(t, { fwd: { auth: { forward: true } }, other: {}, static: { auth: { bearer: 'svc' } } } as never)
  const headers = { authorization: 'Bearer caller-token' }
  t.equal((await app.inject({ url: '/call/fwd', headers })).statusCode, 200)
  t.equal(server.requests[0].headers.authorization, 'Bearer caller-token')
  await app.inject({ url: '/call/other', headers })
  t.equal(server.requests[1].headers.authorization, undefined, 'a service without forward never gets it')
  await app.inject({ url: '/call/static', headers })
  t.equal(server.requests[2].headers.authorization, 'Bearer svc', 'nor does a service with its own scheme')
  await app.inject({ url: '/call/fwd' })
  t.equal(server.requests[3].headers.authorization, undefined, 'an inbound request without one forwards none')
  t.notOk(app.httpServices.stats().fwd.policies.includes('auth'), 'forward costs no policy in the chain')
})

t.test('forward: a header name forwards that inbound header under its name', async (t) => {
  const { server, app } = await setup(t, { fwd: { auth: { forward: 'X-User-Token' } } } as never)
  await app.inject({ url: '/call/fwd', headers: { 'x-user-token': 'u-tok', authorization: 'Bearer not-this' } })
  t.equal(server.requests[0].headers['x-user-token'], 'u-tok')
  t.equal(server.requests[0].headers.authorization, undefined)
})

t.test('a call\'s token replaces the forwarded credential; auth: false drops it', async (t) => {
  const { server, app } = await setup(t, { fwd: { auth: { forward: true } }, named: { auth: { forward: 'x-user-token' } } } as never)
  const headers = { authorization: 'Bearer caller-token', 'x-user-token': 'u-tok' }
  await app.inject({ url: '/call/fwd', headers: { ...headers, 'x-call': JSON.stringify({ token: 'call-tok' }) } })
  t.equal(server.requests[0].headers.authorization, 'Bearer call-tok')
  await app.inject({ url: '/call/fwd', headers: { ...headers, 'x-call': JSON.stringify({ auth: false }) } })
  t.equal(server.requests[1].headers.authorization, undefined)
  await app.inject({ url: '/call/named', headers: { ...headers, 'x-call': JSON.stringify({ token: 'call-tok' }) } })
  t.equal(server.requests[2].headers.authorization, 'Bearer call-tok')
  t.equal(server.requests[2].headers['x-user-token'], undefined, 'the forwarded header is not sent beside the token')
  await app.inject({ url: '/call/named', headers: { ...headers, 'x-call': JSON.stringify({ auth: false }) } })
  t.equal(server.requests[3].headers['x-user-token'], undefined)
  await app.inject({ url: '/call/named', headers: { ...headers, 'x-call': JSON.stringify({ auth: false, headers: { 'x-user-token': 'own' } }) } })
  t.equal(server.requests[4].headers['x-user-token'], 'own', 'a header the call sets itself stays')
  await app.inject({ url: '/call/fwd', headers: { ...headers, 'x-call': JSON.stringify({ retry: 1 }) } })
  t.equal(server.requests[5].headers.authorization, 'Bearer caller-token', 'other call options keep it')
})

t.test('calls made outside an inbound request forward nothing', async (t) => {
  const { server, app } = await setup(t, { fwd: { auth: { forward: true } } } as never)
  await app.ready()
  await app.httpServices.client('fwd').get('/')
  t.equal(server.requests[0].headers.authorization, undefined)
})

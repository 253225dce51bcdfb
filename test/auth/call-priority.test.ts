import t from 'tap'
import { createHttpServices, InvalidRequestError, type ServiceOptions } from '../../index'
import { sendJson, startServer, type TestServer } from '../helpers/server'

async function setup (t: tap.Test, services: Record<string, Partial<ServiceOptions>>) {
  const server = await startServer((_req, res) => sendJson(res, 200, {}))
  const registry = createHttpServices({
    defaults: { retry: false },
    services: Object.fromEntries(Object.entries(services).map(([name, o]) => [name, { baseUrl: server.url, ...o }]))
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await server.close() })
  return { server, registry }
}

function last (server: TestServer) {
  return server.requests[server.requests.length - 1]
}

const kSchemes: Record<string, Partial<ServiceOptions>> = {
  bearer: { auth: { bearer: 'svc-token' } },
  fn: { auth: { bearer: () => 'svc-fn-token' } },
  header: { auth: { apiKey: { value: 'svc-key' } } },
  query: { auth: { apiKey: { value: 'svc-key', query: 'key' } } },
  basic: { auth: { basic: { username: 'u', password: 'p' } } },
  none: {}
}

t.test('a call\'s token is sent as Authorization: Bearer and wins over every scheme of the service', async (t) => {
  const { server, registry } = await setup(t, kSchemes)
  for (const name of Object.keys(kSchemes)) {
    await registry.client(name).get('/p', { token: 'call-token' })
    const seen = last(server)
    t.equal(seen.headers.authorization, 'Bearer call-token', `${name}: the call's token`)
    t.equal(seen.headers['x-api-key'], undefined, `${name}: no API key header`)
    t.equal(seen.url, '/p', `${name}: no API key in the query`)
  }
})

t.test('a call\'s token wins even over a header the call sets', async (t) => {
  const { server, registry } = await setup(t, { api: {} })
  await registry.client('api').get('/', { token: 'call-token', headers: { authorization: 'Basic xyz' } })
  t.equal(last(server).headers.authorization, 'Bearer call-token')
})

t.test('auth: false on a call sends none of the service\'s credentials', async (t) => {
  const { server, registry } = await setup(t, kSchemes)
  for (const name of Object.keys(kSchemes)) {
    await registry.client(name).get('/p', { auth: false })
    const seen = last(server)
    t.equal(seen.headers.authorization, undefined, `${name}: no Authorization`)
    t.equal(seen.headers['x-api-key'], undefined, `${name}: no API key header`)
    t.equal(seen.url, '/p', `${name}: no API key in the query`)
  }
})

t.test('a bad token or auth value rejects the call with InvalidRequestError, without showing the value', async (t) => {
  const { server, registry } = await setup(t, { bearer: kSchemes.bearer, none: {} })
  for (const name of ['bearer', 'none']) {
    const api = registry.client(name)
    const bad = await api.get('/', { token: 'leaky\r\nsecret' }).catch((e: unknown) => e) as InvalidRequestError
    t.ok(bad instanceof InvalidRequestError, `${name}: refused`)
    t.equal(bad.message, `${name}: the token call option must be a non-empty string without CR, LF or NUL`)
    t.notMatch(JSON.stringify(bad), /leaky|secret/)
    await t.rejects(api.get('/', { token: '' }), InvalidRequestError)
    await t.rejects(api.get('/', { token: 42 as unknown as string }), InvalidRequestError)
    await t.rejects(api.get('/', { auth: true as unknown as false }), { message: `${name}: the auth call option can only be false (send a token with the token call option)` })
  }
  t.equal(server.requests.length, 0)
})

t.test('a call with token or auth on a service without auth goes through its per-call chain; others stay on the chain without auth', async (t) => {
  const { server, registry } = await setup(t, { api: {} })
  const service = registry.get('api') as unknown as { perCallHandler: unknown }
  await registry.client('api').get('/')
  t.equal(service.perCallHandler, undefined, 'a plain call builds no per-call chain')
  t.equal(last(server).headers.authorization, undefined)
  await registry.client('api').get('/', { token: 't' })
  t.not(service.perCallHandler, undefined)
})

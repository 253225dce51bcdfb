import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('a call\'s timeout option is checked: bad values and connect are refused before anything is sent', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const services = createHttpServices({ services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')

  await t.rejects(api.get('/x', { timeout: { connect: 100 } as never }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'timeout.connect', service: 'api', message: /belongs to the service's pool/
  })
  await t.rejects(api.get('/x', { timeout: -1 }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'timeout' })
  await t.rejects(api.get('/x', { timeout: { headers: 0 } }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'timeout.headers' })
  await t.rejects(api.get('/x', { timeout: { atempt: 5 } as never }), { message: /did you mean "attempt"/ })
  await t.rejects(api.get('/x', { timeout: 'soon' as never }), { key: 'timeout', message: /expected/ })
  await t.rejects(api.get('/x', { timeout: { total: 3e9 } }), { key: 'timeout.total', message: /at most 2147483647 ms/ })
  t.equal(server.requests.length, 0, 'no refused call reached the server')

  const res = await api.get('/x', { timeout: { headers: 2000, body: 2000, attempt: 3000, total: 5000 } })
  t.equal(res.status, 200)
  t.same(await api.getJson('/x', { timeout: 5000 }), { ok: true })
})

import t from 'tap'
import { createHttpServices } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer, type TestServer } from '../helpers/server'

const connections = async (server: TestServer): Promise<number> =>
  await new Promise<number>((resolve) => { server.server.getConnections((_err, n) => resolve(n)) })

async function until (what: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await what()) return true
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return await what()
}

function registryFor (idp: TestServer, api: TestServer, closeTimeout = 100) {
  const { logger, lines } = capturePino()
  const registry = createHttpServices({
    logger,
    closeTimeout,
    services: { api: { baseUrl: api.url, retry: false, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'c', clientSecret: 's' } } } }
  })
  return { registry, lines }
}

t.test('close ends a token request the endpoint never answers: its connection is gone at once, nothing waits for headersTimeout', async (t) => {
  const idp = await startServer(() => {})
  const api = await startServer((_req, res) => { sendJson(res, 200, {}) })
  t.teardown(async () => { await idp.close(); await api.close() })
  const { registry, lines } = registryFor(idp, api)
  await registry.open()
  const call = registry.client('api').get('/r').then(() => 'answered', (err: Error) => err)
  t.ok(await until(() => idp.requests.length === 1, 2000), 'the token request reached the endpoint')
  const started = Date.now()
  await registry.close()
  t.ok(Date.now() - started < 1000, `close took ${Date.now() - started} ms`)
  t.match(await call, { message: /closed/ }, 'the waiting call ended with the close')
  t.ok(await until(async () => await connections(idp) === 0, 1000), 'the token pool\'s connection is closed')
  t.notOk(lines.some((l) => l.msg === 'OAuth2 token request failed'), 'the request ended by close is not logged as a failure')
})

t.test('close ends a backoff between token requests: no request after close, no timer left', async (t) => {
  const idp = await startServer((_req, res) => { sendJson(res, 503, {}) })
  const api = await startServer((_req, res) => { sendJson(res, 200, {}) })
  t.teardown(async () => { await idp.close(); await api.close() })
  // Close hooks run once closeTimeout (here 20 ms) has passed for the waiting call: well inside the first backoff (100 ms).
  const { registry } = registryFor(idp, api, 20)
  await registry.open()
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  const before = timers()
  const call = registry.client('api').get('/r').then(() => 'answered', (err: Error) => err)
  t.ok(await until(() => idp.requests.length === 1, 2000), 'the first token request was refused')
  await registry.close()
  const atClose = idp.requests.length
  t.equal(atClose, 1, 'closed during the first backoff')
  t.ok(timers() <= before, `no timer left (${timers()} now, ${before} before)`)
  t.match(await call, { message: /closed/ })
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(idp.requests.length, atClose, 'no token request after close (the backoffs are 100 then 200 ms)')
})

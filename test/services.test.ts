import { Writable } from 'node:stream'
import t from 'tap'
import pino from 'pino'
import { createHttpServices, HttpClient, HttpServices, silentLogger, type Logger } from '../index'
import { sendJson, startServer } from './helpers/server'

t.test('createHttpServices: open, client, close, without Fastify', async (t) => {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url, rid: seen.headers['x-request-id'] ?? null }))
  t.teardown(async () => await server.close())
  const services = createHttpServices({ defaults: { retry: false }, services: { users: { baseUrl: server.url } } })
  t.ok(services instanceof HttpServices)
  await t.rejects(services.client('users').get('/'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', message: /not open yet/ }, 'calls before open are refused')
  await services.open()
  await services.open()
  const users = services.client('users')
  t.ok(users instanceof HttpClient)
  t.equal(users.service, 'users')
  t.same(await users.getJson('/me'), { url: '/me', rid: null }, 'outside a request no request id is sent')
  await services.close()
  await services.close()
  await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
  await services.open()
  await t.rejects(users.get('/me'), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' }, 'a closed registry does not reopen')
  t.equal(server.requests.length, 1)
})

t.test('the logger option takes a pino logger; each service logs through a child bound to its name', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } })
  const logger = pino({ level: 'debug' }, stream)
  const services = createHttpServices({
    logger,
    defaults: { retry: false },
    services: { billing: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } }
  })
  await services.open()
  t.teardown(async () => await services.close())
  services.client('billing').logger.info({ job: 'nightly' }, 'from a worker')
  await new Promise((resolve) => setImmediate(resolve))
  t.match(lines.find((l) => /verification is off/.test(String(l.msg))), { level: 40, service: 'billing' })
  t.match(lines.find((l) => l.msg === 'from a worker'), { level: 30, service: 'billing', job: 'nightly' })
})

t.test('without a logger nothing is logged (and nothing throws)', async (t) => {
  t.equal(silentLogger.child({ a: 1 }), silentLogger)
  const services = createHttpServices({ services: { a: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } } })
  await services.open()
  await services.close()
  t.pass()
})

t.test('a minimal logger object works too (only debug/info/warn/error/child)', async (t) => {
  const calls: string[] = []
  const logger: Logger = {
    debug: () => { calls.push('debug') },
    info: () => { calls.push('info') },
    warn: (_o, msg) => { calls.push(`warn ${msg ?? ''}`) },
    error: () => { calls.push('error') },
    child: () => logger
  }
  const services = createHttpServices({ logger, services: { a: { baseUrl: 'https://127.0.0.1:1', tls: { rejectUnauthorized: false } } } })
  await services.open()
  await services.close()
  t.match(calls, [/^warn TLS certificate verification is off/])
})

t.test('stats() reports each service: name, origins, state, policies, counters and pool counters', async (t) => {
  const server = await startServer((req, res) => {
    if (req.url === '/v1/fail') { res.writeHead(500); res.end('no'); return }
    res.end('ok')
  })
  t.teardown(async () => await server.close())
  const services = createHttpServices({
    defaults: { retry: false },
    services: { api: { baseUrl: `${server.url}/v1`, connections: 4 }, idle: { baseUrl: 'http://127.0.0.1:1' } }
  })
  const before = services.stats()
  t.same(Object.keys(before), ['api', 'idle'])
  t.match(before.api, { name: 'api', origins: [server.url], state: 'created', requests: 0, attempts: 0, failures: 0, inFlight: 0 })
  t.equal(before.api.pool, undefined, 'no pool before open')
  await services.open()
  t.teardown(async () => await services.close())
  const api = services.client('api')
  await (await api.get('/ok')).text()
  await t.rejects(api.get('/fail'), { code: 'HTTP_SERVICES_ERR_STATUS' })
  await t.rejects(services.client('idle').get('/'), { code: 'HTTP_SERVICES_ERR_CONNECTION' })
  const after = services.stats()
  t.match(after.api, { name: 'api', state: 'open', requests: 2, inFlight: 0 })
  t.ok(Array.isArray(after.api.policies), 'policies is the list of policy names in the chain')
  t.match(after.idle, { requests: 1, failures: 1, inFlight: 0 }, 'a transport failure is counted')
  t.same(Object.keys(after.api.pool ?? {}).sort(), ['connected', 'free', 'pending', 'queued', 'running', 'size'])
  for (const value of Object.values(after.api.pool ?? {})) t.type(value, 'number')
  t.equal(after.api.pool?.running, 0)
  t.same(JSON.parse(JSON.stringify(services.stats())).api.name, 'api', 'stats are plain JSON')
})

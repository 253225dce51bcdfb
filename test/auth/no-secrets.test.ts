import { inspect } from 'node:util'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import t from 'tap'
import httpServices, { createHttpServices, type CallOptions, type HttpServicesOptions } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { closedPort, sendJson, startServer } from '../helpers/server'

// Every secret this file uses: none may appear in a log line, an error (message, properties, JSON, inspect), a reply
// Fastify sends for an error, or stats().
const kSecrets = {
  bearer: 'SECRET-bearer-7f3a',
  bearerFn: 'SECRET-bearer-fn-19c2',
  apiKey: 'SECRET-apikey-header-55d1',
  queryKey: 'SECRET-apikey-query-a0e9',
  password: 'SECRET-basic-pw-3b8e',
  callToken: 'SECRET-call-token-c4d0',
  inbound: 'SECRET-inbound-authz-6e21',
  cookie: 'SECRET-cookie-0b7f',
  setCookie: 'SECRET-set-cookie-9d44',
  badToken: 'SECRET-bad-token-2a6c',
  clientSecret: 'SECRET-client-secret-77aa',
  accessToken: 'SECRET-access-token-41bd'
}
const kBasic = Buffer.from(`user:${kSecrets.password}`).toString('base64')
const kClientBasic = Buffer.from(`client:${kSecrets.clientSecret}`).toString('base64')
const all = [...Object.values(kSecrets), kBasic, kClientBasic]

t.test('no secret appears in any log line, error, error reply or stats() during failing authenticated calls', async (t) => {
  const { logger, lines } = capturePino()
  const failing = await startServer((req, res) => {
    const status = req.url?.startsWith('/unauthorized') === true ? 401 : 503
    sendJson(res, status, { error: 'nope' }, { 'set-cookie': `session=${kSecrets.setCookie}; HttpOnly` })
  })
  const closed = await closedPort()
  // A token endpoint: a token for grant requests on /token, invalid_client on /refuse.
  const idp = await startServer((req, res) => {
    if (req.url === '/refuse') return sendJson(res, 401, { error: 'invalid_client', error_description: 'bad secret' })
    sendJson(res, 200, { access_token: kSecrets.accessToken, token_type: 'Bearer', expires_in: 3600 })
  })
  const services: HttpServicesOptions['services'] = {
    bearer: { baseUrl: failing.url, retry: { attempts: 2, baseDelay: 1 }, auth: { bearer: kSecrets.bearer } },
    fn: { baseUrl: failing.url, auth: { bearer: () => kSecrets.bearerFn } },
    header: { baseUrl: failing.url, auth: { apiKey: { value: kSecrets.apiKey } } },
    query: { baseUrl: `${failing.url}/v1`, retry: { attempts: 2, baseDelay: 1 }, auth: { apiKey: { value: kSecrets.queryKey, query: 'api_key' } } },
    basic: { baseUrl: `http://127.0.0.1:${closed}`, retry: { attempts: 2, baseDelay: 1 }, auth: { basic: { username: 'user', password: kSecrets.password } } },
    forward: { baseUrl: failing.url, auth: { forward: true }, forwardHeaders: ['cookie'] },
    throwing: { baseUrl: failing.url, auth: { bearer: () => { throw new Error('no token today') } } },
    oauth: { baseUrl: failing.url, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'client', clientSecret: kSecrets.clientSecret } } },
    refused: { baseUrl: failing.url, auth: { oauth2: { tokenUrl: `${idp.url}/refuse`, clientId: 'client', clientSecret: kSecrets.clientSecret, authMethod: 'post' } } }
  }
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger })
  await app.register(httpServices, { defaults: { retry: false }, services })
  const errors: unknown[] = []
  app.get('/call/:service', async (request) => {
    const raw = request.headers['x-call']
    const options = typeof raw === 'string' ? JSON.parse(raw) as CallOptions : undefined
    const path = request.headers['x-path'] as string | undefined ?? '/fail'
    try {
      return await request.httpClient((request.params as { service: string }).service).get(path, options)
    } catch (err) {
      errors.push(err)
      request.log.error({ err }, 'downstream call failed')
      throw err
    }
  })
  t.teardown(async () => { await app.close(); await failing.close(); await idp.close() })

  const inbound = { authorization: `Bearer ${kSecrets.inbound}`, cookie: `sid=${kSecrets.cookie}` }
  const replies: string[] = []
  const calls: Array<[string, Record<string, string>]> = [
    ['bearer', {}],
    ['fn', {}],
    ['header', {}],
    ['query', { 'x-path': '/fail?x=1' }],
    ['basic', {}],
    ['forward', {}],
    ['throwing', {}],
    ['oauth', {}],
    ['oauth', { 'x-path': '/unauthorized' }],
    ['refused', {}],
    ['bearer', { 'x-call': JSON.stringify({ token: kSecrets.callToken }), 'x-path': '/unauthorized' }],
    ['header', { 'x-call': JSON.stringify({ token: `${kSecrets.badToken}\n` }) }],
    ['fn', { 'x-call': JSON.stringify({ headers: { authorization: `Bearer ${kSecrets.badToken}\r\n` } }) }]
  ]
  for (const [service, headers] of calls) {
    const res = await app.inject({ url: `/call/${service}`, headers: { ...inbound, ...headers } })
    t.ok(res.statusCode >= 400, `${service}: the call failed (${res.statusCode})`)
    replies.push(res.body)
  }
  t.equal(errors.length, calls.length, 'every call failed with an error')

  // Registration errors carry no secret either.
  for (const auth of [{ bearer: `${kSecrets.bearer}\n` }, { basic: { username: 'u', password: `${kSecrets.password}\n` } }]) {
    try {
      createHttpServices({ services: { bad: { baseUrl: failing.url, auth } } })
    } catch (err) {
      errors.push(err)
    }
  }

  const seen: string[] = [
    ...lines.map((l) => JSON.stringify(l)),
    ...replies,
    JSON.stringify(app.httpServices.stats()),
    inspect(app.httpServices.stats(), { depth: 10 })
  ]
  for (const err of errors) {
    seen.push(JSON.stringify(err), String(err), inspect(err, { depth: 10 }), (err as Error).stack ?? '')
    // Every enumerable property: what a serializer or a logger walks. `HttpStatusError.responseHeaders` (the
    // downstream's own set-cookie) and `body` are not enumerable on purpose: code reads them, nothing logs them.
    for (const key of Object.keys(err as object)) {
      try {
        seen.push(inspect((err as Record<string, unknown>)[key], { depth: 10 }))
      } catch {}
    }
  }
  t.ok(lines.length > 10, `captured the log lines (${lines.length})`)
  t.ok(lines.some((l) => l.msg === 'downstream call failed'), 'the errors were logged')
  const text = seen.join('\n')
  for (const secret of all) t.notOk(text.includes(secret), `${secret.slice(0, 20)}… appears nowhere`, { where: seen.filter((s) => s.includes(secret)).map((s) => s.slice(0, 300)) })
  t.match(text, /api_key=\*\*\*/, 'the query key shows redacted')

  // The secrets did reach the wire, so the test proves something.
  const wire = JSON.stringify(failing.requests.map((r) => [r.url, r.headers]))
  for (const secret of [kSecrets.bearer, kSecrets.bearerFn, kSecrets.apiKey, kSecrets.queryKey, kSecrets.callToken, kSecrets.inbound, kSecrets.cookie, kSecrets.accessToken]) {
    t.ok(wire.includes(secret), `${secret.slice(0, 20)}… was sent`)
  }
  const idpWire = JSON.stringify(idp.requests.map((r) => [r.headers, r.body]))
  t.ok(idpWire.includes(kClientBasic) && idpWire.includes(kSecrets.clientSecret), 'the client secret went to the token endpoint, basic and post')
})

t.test('no secret appears in the response of a successful authenticated call (url, inspect) or the debug log', async (t) => {
  const { logger, lines } = capturePino()
  const ok = await startServer((_req, res) => { sendJson(res, 200, { ok: true }, { 'set-cookie': `session=${kSecrets.setCookie}; HttpOnly` }) })
  const idp = await startServer((_req, res) => { sendJson(res, 200, { access_token: kSecrets.accessToken, token_type: 'Bearer', expires_in: 3600 }) })
  const services: HttpServicesOptions['services'] = {
    bearer: { baseUrl: ok.url, auth: { bearer: kSecrets.bearer } },
    fn: { baseUrl: ok.url, auth: { bearer: () => kSecrets.bearerFn } },
    header: { baseUrl: ok.url, auth: { apiKey: { value: kSecrets.apiKey } } },
    query: { baseUrl: `${ok.url}/v1`, auth: { apiKey: { value: kSecrets.queryKey, query: 'api_key' } } },
    basic: { baseUrl: ok.url, auth: { basic: { username: 'user', password: kSecrets.password } } },
    forward: { baseUrl: ok.url, auth: { forward: true }, forwardHeaders: ['cookie'] },
    oauth: { baseUrl: ok.url, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'client', clientSecret: kSecrets.clientSecret } } }
  }
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger })
  await app.register(httpServices, { services })
  const seen: string[] = []
  app.get('/call/:service', async (request) => {
    const raw = request.headers['x-call']
    const options = typeof raw === 'string' ? JSON.parse(raw) as CallOptions : undefined
    const res = await request.httpClient((request.params as { service: string }).service).get(request.headers['x-path'] as string | undefined ?? '/ok', options)
    seen.push(res.url, inspect(res), inspect(res, { depth: 10 }), inspect(res, { showHidden: true }), JSON.stringify(res))
    // What console.log of the client and of the registry shows (fixed and forwarded credentials are in their headers).
    seen.push(inspect(request.httpClient((request.params as { service: string }).service), { depth: 6 }), inspect(app.httpServices, { depth: 6 }))
    request.log.info({ res: { url: res.url, status: res.status } }, 'downstream call answered')
    return await res.json()
  })
  t.teardown(async () => { await app.close(); await ok.close(); await idp.close() })

  const inbound = { authorization: `Bearer ${kSecrets.inbound}`, cookie: `sid=${kSecrets.cookie}` }
  const calls: Array<[string, Record<string, string>]> = [
    ['bearer', {}], ['fn', {}], ['header', {}], ['query', { 'x-path': '/ok?x=1' }], ['query', {}], ['basic', {}], ['forward', {}],
    ['oauth', {}], ['oauth', {}], ['header', { 'x-call': JSON.stringify({ token: kSecrets.callToken }) }]
  ]
  for (const [service, headers] of calls) {
    const res = await app.inject({ url: `/call/${service}`, headers: { ...inbound, ...headers } })
    t.equal(res.statusCode, 200, `${service}: the call succeeded`)
  }
  t.ok(seen.some((s) => s.endsWith('/v1/ok?x=1&api_key=***')), 'res.url shows the query key redacted')
  seen.push(...lines.map((l) => JSON.stringify(l)), JSON.stringify(app.httpServices.stats()))
  t.ok(lines.some((l) => l.msg === 'OAuth2 token refreshed'), 'the debug lines were captured')
  const text = seen.join('\n')
  for (const secret of all) t.notOk(text.includes(secret), `${secret.slice(0, 20)}… appears nowhere`, { where: seen.filter((s) => s.includes(secret)).map((s) => s.slice(0, 300)) })
  const wire = JSON.stringify(ok.requests.map((r) => [r.url, r.headers]))
  for (const secret of [kSecrets.bearer, kSecrets.bearerFn, kSecrets.apiKey, kSecrets.queryKey, kBasic, kSecrets.callToken, kSecrets.inbound, kSecrets.cookie, kSecrets.accessToken]) {
    t.ok(wire.includes(secret), `${secret.slice(0, 20)}… was sent`)
  }
})

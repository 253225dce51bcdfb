import { inspect } from 'node:util'
import t from 'tap'
import { AuthError, createHttpServices, HttpStatusError, type OAuth2Options, type ServiceOptions } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { closedPort, sendJson, startServer, type SeenRequest } from '../helpers/server'

type TokenReply = (seen: SeenRequest, n: number) => { status?: number, body: unknown, delay?: number }

const kSecret = 'SECRET-client-secret-e1f0'

/**
 * A token endpoint (answers with `reply`, default: a fresh token `t<n>` of 3600 s) and a resource server that accepts
 * the tokens in `valid` (all, when it is `undefined`) and answers 401 to others.
 */
async function setup (t: tap.Test, opts: { reply?: TokenReply, valid?: (token: string) => boolean, oauth2?: Partial<OAuth2Options>, service?: Partial<ServiceOptions> } = {}) {
  let n = 0
  const reply: TokenReply = opts.reply ?? ((_s, i) => ({ body: { access_token: `t${i}`, token_type: 'Bearer', expires_in: 3600 } }))
  const idp = await startServer(async (_req, res, seen) => {
    const r = reply(seen, ++n)
    if (r.delay !== undefined) await new Promise((resolve) => setTimeout(resolve, r.delay))
    sendJson(res, r.status ?? 200, r.body)
  })
  const api = await startServer((req, res) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    if (opts.valid !== undefined && !opts.valid(token)) return sendJson(res, 401, { error: 'invalid_token' })
    sendJson(res, 200, { token })
  })
  const { logger, lines } = capturePino()
  const registry = createHttpServices({
    logger,
    defaults: { retry: false },
    services: {
      idp: { baseUrl: idp.url },
      api: {
        baseUrl: api.url,
        ...opts.service,
        auth: { oauth2: { tokenUrl: `${idp.url}/oauth/token`, clientId: 'my-client', clientSecret: kSecret, ...opts.oauth2 } }
      }
    }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await idp.close(); await api.close() })
  return { idp, api, registry, client: registry.client('api'), lines }
}

const tokensOf = (api: { requests: SeenRequest[] }): unknown[] => api.requests.map((r) => r.headers.authorization)

/** A clock the test moves forward: `Date.now()` plus what `advance` added, restored at teardown. */
function fakeClock (t: tap.Test): (ms: number) => void {
  const realNow = Date.now
  let offset = 0
  Date.now = () => realNow() + offset
  t.teardown(() => { Date.now = realNow })
  return (ms) => { offset += ms }
}

async function until (what: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms
  while (!what() && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 5))
}

t.test('50 concurrent calls with no token make one token request, and all carry the token', async (t) => {
  const { idp, api, client } = await setup(t, { reply: (_s, i) => ({ body: { access_token: `t${i}`, token_type: 'bearer', expires_in: 3600 }, delay: 50 }) })
  const answers = await Promise.all(Array.from({ length: 50 }, () => client.getJson<{ token: string }>('/r')))
  t.equal(idp.requests.length, 1)
  t.ok(answers.every((a) => a.token === 't1'))
  t.equal(api.requests.length, 50)
  await client.get('/again')
  t.equal(idp.requests.length, 1, 'the cached token serves later calls')
})

t.test('client_secret_basic form-encodes id and secret (RFC 6749 §2.3.1); post puts them in the form', async (t) => {
  const id = 'a:b%c d'
  const secret = 's%:+ é'
  const basic = await setup(t, { oauth2: { clientId: id, clientSecret: secret, scope: ['read', 'write'], audience: 'aud', extraParams: { x: 'y' } } })
  await basic.client.get('/')
  const seen = basic.idp.requests[0]
  t.equal(seen.method, 'POST')
  t.equal(seen.url, '/oauth/token')
  t.equal(seen.headers['content-type'], 'application/x-www-form-urlencoded')
  const decoded = Buffer.from(String(seen.headers.authorization).replace(/^Basic /, ''), 'base64').toString()
  t.equal(decoded, 'a%3Ab%25c+d:s%25%3A%2B+%C3%A9')
  const form = new URLSearchParams(seen.body)
  t.same(Object.fromEntries(form), { grant_type: 'client_credentials', scope: 'read write', audience: 'aud', x: 'y' })

  const post = await setup(t, { oauth2: { clientId: id, clientSecret: secret, authMethod: 'post' } })
  await post.client.get('/')
  const seenPost = post.idp.requests[0]
  t.equal(seenPost.headers.authorization, undefined)
  t.same(Object.fromEntries(new URLSearchParams(seenPost.body)), { grant_type: 'client_credentials', client_id: id, client_secret: secret })
})

t.test('a token is refreshed before it expires, in the background: calls keep the old one meanwhile', async (t) => {
  const advance = fakeClock(t)
  const { idp, api, client, lines } = await setup(t, {
    oauth2: { refreshBefore: 1500 },
    reply: (_s, i) => ({ body: { access_token: `t${i}`, token_type: 'Bearer', expires_in: 2 }, delay: i === 2 ? 300 : 0 })
  })
  await client.get('/')
  advance(1100) // past 2 s - 1500 ms: due for refresh, still valid
  await client.get('/')
  t.equal(api.requests[1].headers.authorization, 'Bearer t1', 'the call used the old token: it did not wait for the refresh (300 ms)')
  await until(() => idp.requests.length === 2)
  t.equal(idp.requests.length, 2, 'the refresh started')
  await until(() => lines.filter((l) => l.msg === 'OAuth2 token refreshed').length === 2)
  await client.get('/')
  t.same(tokensOf(api), ['Bearer t1', 'Bearer t1', 'Bearer t2'])
  t.equal(idp.requests.length, 2, 'one refresh')
})

t.test('a failed background refresh is not tried again on the next call, but after a few seconds', async (t) => {
  const advance = fakeClock(t)
  let down = false
  const { idp, api, client, lines } = await setup(t, { reply: (_s, i) => down ? { status: 503, body: {} } : { body: { access_token: `t${i}`, token_type: 'Bearer', expires_in: 3600 } } })
  await client.get('/')
  down = true
  advance(3550_000) // due for refresh (refreshBefore 60 s), still valid
  await client.get('/')
  await until(() => lines.some((l) => l.msg === 'OAuth2 token request failed'))
  t.equal(idp.requests.length, 4, 'the refresh was tried 3 times')
  for (let i = 0; i < 5; i++) await client.get('/')
  t.equal(idp.requests.length, 4, 'no refresh right after the failed one')
  t.ok(tokensOf(api).every((a) => a === 'Bearer t1'), 'calls kept the old token')
  down = false
  advance(6_000)
  await client.get('/')
  await until(() => idp.requests.length === 5)
  t.equal(idp.requests.length, 5, 'a few seconds later the refresh is tried again')
})

t.test('a 401 storm fetches at most one token every few seconds', async (t) => {
  const advance = fakeClock(t)
  const { idp, api, client } = await setup(t, { valid: () => false })
  const status = async (): Promise<unknown> => await client.get('/').then((r) => r.status, (e: HttpStatusError) => e.status)
  t.equal(await status(), 401)
  t.same(tokensOf(api), ['Bearer t1', 'Bearer t2'], 'the first 401 dropped t1, t2 was tried once')
  for (let i = 0; i < 5; i++) t.equal(await status(), 401)
  t.equal(idp.requests.length, 2, 'later 401s moments after a drop fetch no token')
  t.equal(api.requests.length, 7, 'and resend nothing: the token would be the same')
  advance(6_000)
  t.equal(await status(), 401)
  t.equal(idp.requests.length, 3, 'a few seconds later a 401 drops the token again')
})

t.test('token answers: no token_type is taken for Bearer, expires_in <= 0 serves one call, refreshBefore 0 is accepted, extraParams cannot change the grant', async (t) => {
  const plain = await setup(t, {
    oauth2: { refreshBefore: 0, extraParams: { grant_type: 'password', client_id: 'other', x: 'y' } },
    reply: (_s, i) => ({ body: { access_token: `t${i}`, expires_in: i === 1 ? 0 : 3600 } })
  })
  await plain.client.get('/')
  await plain.client.get('/')
  await plain.client.get('/')
  t.same(tokensOf(plain.api), ['Bearer t1', 'Bearer t2', 'Bearer t2'], 'the token of expires_in 0 was not kept')
  t.same(Object.fromEntries(new URLSearchParams(plain.idp.requests[0].body)), { grant_type: 'client_credentials', client_id: 'other', x: 'y' },
    'grant_type stays client_credentials (client_id in the form is only extra with basic auth)')
})

t.test('an expired token is not used: the call waits for a new one', async (t) => {
  const advance = fakeClock(t)
  const { idp, api, client } = await setup(t, { oauth2: { refreshBefore: 1 }, reply: (_s, i) => ({ body: { access_token: `t${i}`, token_type: 'Bearer', expires_in: 0.3 } }) })
  await client.get('/')
  advance(400)
  await client.get('/')
  t.same(tokensOf(api), ['Bearer t1', 'Bearer t2'])
  t.equal(idp.requests.length, 2)
})

t.test('a 401 drops the token, fetches one and resends once, for any method', async (t) => {
  const { idp, api, client } = await setup(t, { valid: (tok) => tok !== 't1' })
  const res = await client.post('/r', { json: { a: 1 } })
  t.equal(res.status, 200)
  await res.discard()
  t.same(tokensOf(api), ['Bearer t1', 'Bearer t2'])
  t.same(api.requests.map((r) => r.body), ['{"a":1}', '{"a":1}'], 'the body was sent again')
  t.equal(idp.requests.length, 2)
})

t.test('a second 401 is the answer: no loop', async (t) => {
  const { idp, api, client } = await setup(t, { valid: () => false })
  const err = await client.get('/r').catch((e: unknown) => e) as HttpStatusError
  t.ok(err instanceof HttpStatusError)
  t.equal(err.status, 401)
  t.equal(api.requests.length, 2)
  t.equal(idp.requests.length, 2)
})

t.test('two concurrent 401s with the same stale token make one refresh; a token without expires_in is kept until then', async (t) => {
  const { idp, api, client } = await setup(t, { valid: (tok) => tok !== 't1', reply: (_s, i) => ({ body: { access_token: `t${i}`, token_type: 'Bearer' }, delay: 30 }) })
  await Promise.all([client.get('/a'), client.get('/b')])
  t.equal(idp.requests.length, 2, 'one token request at first, one refresh for both 401s')
  t.same(tokensOf(api).sort(), ['Bearer t1', 'Bearer t1', 'Bearer t2', 'Bearer t2'])
  await client.get('/c')
  t.equal(idp.requests.length, 2, 'the new token is kept')
})

t.test('a 401 that lands after another call refreshed the token does not drop the new one', async (t) => {
  let tokens = 0
  const idp = await startServer((_req, res) => { sendJson(res, 200, { access_token: `t${++tokens}`, token_type: 'Bearer' }) })
  let refreshed: () => void = () => {}
  const refreshDone = new Promise<void>((resolve) => { refreshed = resolve })
  const api = await startServer(async (req, res) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    if (token === 't1' && req.url !== '/warm') {
      // B's 401 (with the stale t1) is held until A's resend with t2 was answered: the refresh is over by then.
      if (req.url === '/b') await refreshDone
      return sendJson(res, 401, {})
    }
    sendJson(res, 200, { token })
    if (req.url === '/a') setTimeout(refreshed, 20)
  })
  const registry = createHttpServices({
    defaults: { retry: false },
    services: { api: { baseUrl: api.url, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'c', clientSecret: kSecret } } } }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await idp.close(); await api.close() })
  const client = registry.client('api')
  await client.get('/warm')
  t.equal(tokens, 1, 't1 is cached')
  const [a, b] = await Promise.all([client.getJson<{ token: string }>('/a'), client.getJson<{ token: string }>('/b')])
  t.same([a.token, b.token], ['t2', 't2'], 'B resent with the token A\'s refresh brought')
  t.equal(tokens, 2, 'B\'s late 401 did not drop t2 and fetch a third token')
})

t.test('a 401 to a call whose body was a stream is returned as it is (the body cannot be sent again), and the token is dropped', async (t) => {
  const { idp, api, client } = await setup(t, { valid: (tok) => tok !== 't1' })
  const err = await client.post('/s', { body: require('node:stream').Readable.from(['chunk']) }).catch((e: unknown) => e) as HttpStatusError
  t.equal(err.status, 401)
  t.equal(api.requests.length, 1)
  t.equal(idp.requests.length, 1)
  await client.get('/next')
  t.same(tokensOf(api), ['Bearer t1', 'Bearer t2'], 'the next call fetched a fresh token')
  t.equal(idp.requests.length, 2)
})

t.test('invalid_client gives AuthError 502 with error and error_description, never the secret', async (t) => {
  const { idp, client, lines } = await setup(t, { reply: () => ({ status: 401, body: { error: 'invalid_client', error_description: 'Client\nauthentication failed' } }) })
  const err = await client.get('/r').catch((e: unknown) => e) as AuthError
  t.ok(err instanceof AuthError)
  t.match(err, { code: 'HTTP_SERVICES_ERR_AUTH', statusCode: 502, error: 'invalid_client', error_description: 'Client authentication failed', service: 'api', method: 'GET', url: '/r' })
  t.equal(err.message, 'api: OAuth2 token endpoint answered 401')
  t.equal(idp.requests.length, 1, 'not retried')
  const text = [JSON.stringify(err), inspect(err, { depth: 10 }), String(err.stack), JSON.stringify(lines)].join('\n')
  t.notOk(text.includes(kSecret))
  t.notOk(text.includes(Buffer.from(`my-client:${kSecret}`).toString('base64')))
  t.ok(lines.some((l) => l.level === 40 && l.msg === 'OAuth2 token request failed'), 'logged at warn')
})

t.test('a token endpoint 503 (or 429) is retried with backoff, then its token used', async (t) => {
  const { idp, api, client, lines } = await setup(t, {
    reply: (_s, i) => i === 1 ? { status: 503, body: {} } : i === 2 ? { status: 429, body: {} } : { body: { access_token: 'ok', token_type: 'Bearer', expires_in: 60 } }
  })
  await client.get('/r')
  t.equal(idp.requests.length, 3)
  t.same(tokensOf(api), ['Bearer ok'])
  const refreshed = lines.find((l) => l.msg === 'OAuth2 token refreshed')
  t.match(refreshed, { level: 20, service: 'api', expiresAt: String })
  t.notOk(JSON.stringify(lines).includes('"ok"'), 'the token is not logged')
})

t.test('a 429 from the token endpoint is tried again after its Retry-After; a long Retry-After ends the tries', async (t) => {
  const at: number[] = []
  let wait = '1'
  const idp = await startServer((_req, res) => {
    at.push(performance.now())
    if (at.length === 1 || wait === '60') return sendJson(res, 429, {}, { 'retry-after': wait })
    sendJson(res, 200, { access_token: 'after-wait', token_type: 'Bearer' })
  })
  const api = await startServer((_req, res) => { sendJson(res, 200, {}) })
  const registry = createHttpServices({
    services: {
      api: { baseUrl: api.url, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'c', clientSecret: kSecret } } },
      other: { baseUrl: api.url, auth: { oauth2: { tokenUrl: `${idp.url}/token`, clientId: 'd', clientSecret: kSecret } } }
    }
  })
  await registry.open()
  t.teardown(async () => { await registry.close(); await idp.close(); await api.close() })
  await registry.client('api').get('/')
  t.equal(at.length, 2)
  t.ok(at[1] - at[0] >= 950, `waited ${Math.round(at[1] - at[0])} ms (Retry-After: 1), not the 100 ms backoff`)
  wait = '60'
  await t.rejects(registry.client('other').get('/'), { code: 'HTTP_SERVICES_ERR_AUTH', message: 'other: OAuth2 token endpoint asked to wait 60 s (status 429)' })
  t.equal(at.length, 3, 'one try')
})

t.test('a token response without access_token or with another token_type is an AuthError', async (t) => {
  const missing = await setup(t, { reply: () => ({ body: { token_type: 'Bearer' } }) })
  await t.rejects(missing.client.get('/'), { code: 'HTTP_SERVICES_ERR_AUTH', message: 'api: OAuth2 token endpoint answered without a usable access_token' })
  const mac = await setup(t, { reply: () => ({ body: { access_token: 'x', token_type: 'mac' } }) })
  await t.rejects(mac.client.get('/'), { code: 'HTTP_SERVICES_ERR_AUTH', message: 'api: OAuth2 token endpoint answered a token_type other than Bearer' })
  t.equal(mac.api.requests.length, 0)
})

t.test('tokenService sends the token request through another service', async (t) => {
  const { idp, api, client, registry } = await setup(t, { oauth2: { tokenService: 'idp', tokenUrl: '/oauth/token' } })
  await client.get('/r')
  t.equal(idp.requests.length, 1)
  t.equal(idp.requests[0].url, '/oauth/token')
  t.same(tokensOf(api), ['Bearer t1'])
  t.equal(registry.stats().idp.requests, 1, 'counted as a call of the idp service')
  t.throws(() => createHttpServices({
    services: { api: { baseUrl: 'http://127.0.0.1:1', auth: { oauth2: { tokenService: 'nope', tokenUrl: '/t', clientId: 'a', clientSecret: 'b' } } } }
  }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
    message: 'services.api.auth.oauth2.tokenService: names "nope", which is not a configured service (known: api)'
  })
  const cycle = (service: string): ServiceOptions => ({ baseUrl: 'http://127.0.0.1:1', auth: { oauth2: { tokenService: service, tokenUrl: '/t', clientId: 'a', clientSecret: 'b' } } })
  t.throws(() => createHttpServices({ services: { a: cycle('b'), b: cycle('a') } }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
    message: 'services.a.auth.oauth2.tokenService: leads back to a service already on the way (a -> b -> a): each token request would wait for the other\'s token'
  })
  t.throws(() => createHttpServices({
    defaults: { auth: { oauth2: { tokenService: 'idp', tokenUrl: '/t', clientId: 'a', clientSecret: 'b' } } },
    services: { idp: { baseUrl: 'http://127.0.0.1:1' }, api: { baseUrl: 'http://127.0.0.1:1' } }
  }), {
    code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
    message: 'services.idp.auth.oauth2.tokenService: names this service itself (give services.idp an auth of its own, or auth: false, when oauth2 comes from defaults)'
  })
})

t.test('through tokenService, a failure that is not a transport one is not tried again', async (t) => {
  const { idp, client, registry } = await setup(t, { oauth2: { tokenService: 'idp', tokenUrl: '/oauth token' } })
  const err = await client.get('/r').catch((e: unknown) => e) as InstanceType<typeof AuthError>
  t.ok(err instanceof AuthError)
  t.match(err.message, /^api: OAuth2 token request through idp failed \(HTTP_SERVICES_ERR_FORBIDDEN_URL\)$/)
  t.equal(idp.requests.length, 0)
  t.match(registry.stats().api, { oauth2: { tokenRequests: 1 } }, 'one try')
})

t.test('a tokenService declared after the service using it', async (t) => {
  const idp = await startServer((_req, res) => { sendJson(res, 200, { access_token: 'late', token_type: 'Bearer' }) })
  const api = await startServer((req, res) => { sendJson(res, 200, { auth: req.headers.authorization }) })
  const registry = createHttpServices({
    services: {
      api: { baseUrl: api.url, auth: { oauth2: { tokenService: 'idp', tokenUrl: '/oauth/token', clientId: 'a', clientSecret: kSecret } } },
      idp: { baseUrl: idp.url }
    }
  })
  t.teardown(async () => { await registry.close(); await idp.close(); await api.close() })
  await registry.open()
  t.same(await registry.client('api').getJson('/r'), { auth: 'Bearer late' })
  t.equal(idp.requests.length, 1)
})

t.test('a call\'s token or auth: false bypasses OAuth2', async (t) => {
  const { idp, api, client } = await setup(t)
  await client.get('/', { token: 'mine' })
  await client.get('/', { auth: false })
  t.same(tokensOf(api), ['Bearer mine', undefined])
  t.equal(idp.requests.length, 0)
})

t.test('a call waiting for a token still settles within its total timeout; the fetch goes on for later calls', async (t) => {
  const { idp, api, client } = await setup(t, { reply: (_s, i) => ({ body: { access_token: `t${i}`, token_type: 'Bearer' }, delay: 400 }) })
  const started = Date.now()
  await t.rejects(client.get('/', { timeout: 100 }), { code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'total' })
  t.ok(Date.now() - started < 350, 'it did not wait for the token')
  await client.get('/')
  t.equal(idp.requests.length, 1, 'the later call took the token of the same fetch')
  t.same(tokensOf(api), ['Bearer t1'])
})

t.test('a token endpoint that cannot be reached is tried 3 times, then the call fails with AuthError', async (t) => {
  const port = await closedPort()
  const { api, client, registry } = await setup(t, { oauth2: { tokenUrl: `http://127.0.0.1:${port}/token` } })
  const err = await client.get('/').catch((e: unknown) => e) as AuthError
  t.match(err, { code: 'HTTP_SERVICES_ERR_AUTH', statusCode: 502, message: 'api: OAuth2 token endpoint failed 3 times (network error ECONNREFUSED)' })
  t.equal(api.requests.length, 0)
  t.same(registry.stats().api.oauth2, { tokenRequests: 3 })
})

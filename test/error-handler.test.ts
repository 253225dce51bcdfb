import t from 'tap'
import Fastify from 'fastify'
import httpServices, { createHttpServices } from '../index'
import { closedPort, sendJson, startServer } from './helpers/server'

const kSecret = 's3cret-value'

/**
 * One app whose routes each fail a downstream call in a different way, every call carrying a secret in its query;
 * Fastify's default error handler answers.
 */
t.test('Fastify\'s default error handler turns each error into a JSON reply with the right status and no secrets', async (t) => {
  const downstream = await startServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    switch (path) {
      case '/404': return sendJson(res, 404, { error: 'no such user' }, { 'set-cookie': `session=${kSecret}` })
      case '/503': return sendJson(res, 503, { message: 'overloaded' }, { 'retry-after': '7' })
      case '/slow': return
      case '/html': res.writeHead(200, { 'content-type': 'text/html' }); res.end('<html>oops</html>'); return
      case '/big': res.writeHead(200, { 'content-length': '2048' }); res.end(Buffer.alloc(2048)); return
      default: res.end('{}')
    }
  })
  const refusedPort = await closedPort()
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(httpServices, {
    defaults: { retry: false },
    services: {
      api: { baseUrl: downstream.url, timeout: { headers: 5000 }, maxResponseSize: 1024 },
      passthrough: { baseUrl: downstream.url, passthroughStatus: true },
      refused: { baseUrl: `http://127.0.0.1:${refusedPort}` },
      tls: { baseUrl: downstream.url.replace('http:', 'https:') }
    }
  })
  const notOpen = createHttpServices({ services: { later: { baseUrl: downstream.url } } })
  const q = { token: kSecret }
  const routes: Record<string, (r: import('fastify').FastifyRequest) => Promise<unknown>> = {
    status: async (r) => await r.httpClient('api').getJson('/404', { query: q }),
    passthrough: async (r) => await r.httpClient('passthrough').getJson('/404', { query: q }),
    retryAfter: async (r) => await r.httpClient('api').getJson('/503', { query: q }),
    timeout: async (r) => await r.httpClient('api').getJson('/slow', { query: q, timeout: 100 }),
    refused: async (r) => await r.httpClient('refused').getJson('/x', { query: q }),
    tls: async (r) => await r.httpClient('tls').getJson('/x', { query: q }),
    parse: async (r) => await r.httpClient('api').getJson('/html', { query: q }),
    tooLarge: async (r) => await r.httpClient('api').getJson('/big', { query: q }),
    forbidden: async (r) => await r.httpClient('api').getJson(`https://admin:${kSecret}@evil.example/x?token=${kSecret}`),
    forbiddenPath: async (r) => await r.httpClient('api').getJson(`/a/../b?token=${kSecret}`),
    header: async (r) => await r.httpClient('api').getJson('/x', { query: q, headers: { 'x-a': `${kSecret}\r\nx-b: 1` } }),
    unknown: async (r) => await r.httpClient('nope').getJson('/x', { query: q }),
    closed: async () => await notOpen.client('later').getJson('/x', { query: q }),
    aborted: async (r) => await r.httpClient('api').getJson('/slow', { query: q, signal: AbortSignal.timeout(50) })
  }
  for (const [name, handler] of Object.entries(routes)) app.get(`/${name}`, handler)
  t.teardown(async () => { await app.close(); await notOpen.close(); await downstream.close() })

  const expected: Record<string, [number, string, RegExp]> = {
    status: [502, 'HTTP_SERVICES_ERR_STATUS', /^GET api \/404\?token=\*\*\*: downstream answered 404$/],
    passthrough: [404, 'HTTP_SERVICES_ERR_STATUS', /downstream answered 404/],
    retryAfter: [502, 'HTTP_SERVICES_ERR_STATUS', /downstream answered 503$/],
    timeout: [504, 'HTTP_SERVICES_ERR_TIMEOUT', /^GET api \/slow\?token=\*\*\*: total timeout after 100 ms$/],
    refused: [502, 'HTTP_SERVICES_ERR_CONNECTION', /^GET refused \/x\?token=\*\*\*: connect ECONNREFUSED$/],
    tls: [502, 'HTTP_SERVICES_ERR_TLS', /TLS failure/],
    parse: [502, 'HTTP_SERVICES_ERR_RESPONSE_PARSE', /^GET api \/html\?token=\*\*\*: response 200 is not valid JSON$/],
    tooLarge: [502, 'HTTP_SERVICES_ERR_RESPONSE_TOO_LARGE', /exceeds maxResponseSize 1024/],
    forbidden: [500, 'HTTP_SERVICES_ERR_FORBIDDEN_URL', /absolute URLs are not allowed/],
    forbiddenPath: [500, 'HTTP_SERVICES_ERR_FORBIDDEN_URL', /dot segments/],
    header: [500, 'HTTP_SERVICES_ERR_INVALID_REQUEST', /CR, LF or NUL/],
    unknown: [500, 'HTTP_SERVICES_ERR_UNKNOWN_SERVICE', /known services: api, passthrough, refused, tls/],
    closed: [503, 'HTTP_SERVICES_ERR_CLIENT_CLOSED', /not open yet: await app\.ready\(\) first \(or await services\.open\(\) without Fastify\)/],
    aborted: [499, 'HTTP_SERVICES_ERR_ABORTED', /aborted by the caller's signal/]
  }
  for (const [name, [status, code, message]] of Object.entries(expected)) {
    const res = await app.inject(`/${name}`)
    t.equal(res.statusCode, status, `${name}: status ${status}`)
    t.match(res.headers['content-type'], /^application\/json/, `${name}: a JSON reply`)
    const body = res.json()
    // Node knows no reason phrase for 499, so Fastify leaves `error` out there.
    const keys = status === 499 ? ['code', 'message', 'statusCode'] : ['code', 'error', 'message', 'statusCode']
    t.same(Object.keys(body).sort(), keys, `${name}: the usual Fastify error shape`)
    t.equal(body.statusCode, status)
    t.equal(body.code, code, `${name}: code`)
    t.match(body.message, message, `${name}: message`)
    t.notMatch(res.body, kSecret, `${name}: no secret in the reply`)
    t.notMatch(res.body, /no such user|overloaded|oops|127\.0\.0\.1|:\d{4,5}\b|text\/html/, `${name}: no upstream text or address in the reply`)
    t.notOk('set-cookie' in res.headers, `${name}: no downstream cookie in the reply`)
    if (name === 'retryAfter') t.equal(res.headers['retry-after'], '7', 'the downstream Retry-After is passed on')
  }
  t.ok(lines.length > 0, 'errors were logged')
  // Fastify logs a reply's error with pino's serializer: `err.type` is the class name, not `FastifyError`.
  const types = new Set(lines.map((line) => (JSON.parse(line) as { err?: { type?: string } }).err?.type).filter((type) => type !== undefined))
  for (const type of ['HttpStatusError', 'TimeoutError', 'ConnectionError', 'TlsError', 'ResponseParseError', 'ClientClosedError']) {
    t.ok(types.has(type), `a ${type} is logged with err.type ${type}`)
  }
  t.notOk(types.has('FastifyError'), `no error is logged as FastifyError (${[...types].join(', ')})`)
  t.notMatch(lines.join('\n'), kSecret, 'no secret in the logs')
})

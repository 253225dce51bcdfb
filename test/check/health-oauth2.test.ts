import t from 'tap'
import { checkServices } from '../../lib/check/run'
import { InvalidOptionsError } from '../../lib/errors'
import { resolveOptions } from '../../lib/config/resolve'
import { sendJson } from '../helpers/server'
import { within } from '../helpers/wait'
import { httpServer } from './helpers'

t.test('the health path answers below 500: ok with its status; 503: failed', async (t) => {
  const up = await httpServer(t, (req, res) => { res.statusCode = req.url === '/api/healthz' ? 204 : 404; res.end() })
  const down = await httpServer(t, (_req, res) => { res.statusCode = 503; res.end('maintenance') })
  const report = await within('the check', checkServices({
    services: {
      up: { baseUrl: `${up.url}/api`, healthPath: '/healthz' },
      down: { baseUrl: down.url, healthPath: '/healthz', retry: 5, fallback: () => 'never' }
    }
  }, { timeout: 3000 }), 20_000)
  const health = report.services.map((s) => s.steps.find((x) => x.step === 'health'))
  t.match(health[0], { status: 'ok', target: `${up.url}/api/healthz`, result: 'GET answered 204', httpStatus: 204 })
  t.match(health[1], { status: 'fail', target: `${down.url}/healthz`, result: 'GET answered 503 (500 or above)', httpStatus: 503 })
  t.equal(down.requests.length, 1, 'one GET: retries and the fallback are off for the probe')
  t.equal(report.status, 'fail')
})

t.test('a service with several baseUrls is probed at each', async (t) => {
  const a = await httpServer(t, (_req, res) => { res.end('a') })
  const b = await httpServer(t, (_req, res) => { res.statusCode = 500; res.end('b') })
  const report = await checkServices({ services: { pair: { baseUrl: [a.url, b.url], healthPath: '/h' } } }, { timeout: 3000 })
  const rows = report.services[0].steps.map((s) => [s.step, s.status, s.target])
  t.same(rows, [
    ['dns', 'ok', '127.0.0.1'], ['tcp', 'ok', `127.0.0.1:${a.port}`],
    ['dns', 'ok', '127.0.0.1'], ['tcp', 'ok', `127.0.0.1:${b.port}`],
    ['health', 'ok', `${a.url}/h`], ['health', 'fail', `${b.url}/h`]
  ])
  t.equal(a.requests.length, 1)
  t.equal(b.requests.length, 1)
})

t.test('OAuth2: a real token request; success, or the RFC 6749 error code, never the secret', async (t) => {
  const idp = await httpServer(t, (req, res, seen) => {
    const form = new URLSearchParams(seen.body)
    const basic = Buffer.from(String(req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString()
    if (form.get('grant_type') === 'client_credentials' && basic === 'app:right-s3cret') sendJson(res, 200, { access_token: 'tok-SECRET-123', token_type: 'Bearer', expires_in: 300 })
    else sendJson(res, 401, { error: 'invalid_client', error_description: 'bad secret right-s3cret' })
  })
  const api = await httpServer(t, (req, res) => { res.statusCode = req.headers.authorization === 'Bearer tok-SECRET-123' ? 200 : 401; res.end() })
  const oauth2 = (secret: string): object => ({ oauth2: { tokenUrl: `${idp.url}/token?tenant=t1`, clientId: 'app', clientSecret: secret } })
  const report = await within('the check', checkServices({
    services: {
      good: { baseUrl: api.url, auth: oauth2('right-s3cret'), healthPath: '/me' },
      bad: { baseUrl: api.url, auth: oauth2('wrong-s3cret') }
    }
  }, { timeout: 3000 }), 20_000)
  const [good, bad] = report.services
  t.match(good.steps.find((s) => s.step === 'oauth2'), { status: 'ok', target: `${idp.url}/token`, result: 'token issued' })
  t.match(good.steps.find((s) => s.step === 'health'), { status: 'ok', httpStatus: 200 }, 'the health GET carries the token')
  t.match(bad.steps.find((s) => s.step === 'oauth2'), { status: 'fail', result: 'token endpoint refused: invalid_client', code: 'invalid_client' })
  const text = JSON.stringify(report)
  for (const secret of ['right-s3cret', 'wrong-s3cret', 'tok-SECRET-123', 't1']) t.notOk(text.includes(secret), `${secret} appears nowhere`)
})

t.test('healthPath: a path starting with "/", per service only', async (t) => {
  t.equal(resolveOptions({ services: { a: { baseUrl: 'http://x', healthPath: '/healthz' } } }).services.get('a')?.healthPath, '/healthz')
  t.equal(resolveOptions({ services: { a: { baseUrl: 'http://x' } } }).services.get('a')?.healthPath, undefined)
  for (const bad of ['healthz', '//evil.test/x', '/h?token=abc', '/h#x', 5]) {
    t.throws(() => resolveOptions({ services: { a: { baseUrl: 'http://x', healthPath: bad as string } } }), {
      name: 'InvalidOptionsError',
      key: 'services.a.healthPath',
      message: /^services\.a\.healthPath: expected a path starting with "\/" \(not "\/\/"\), without query or fragment, got /
    }, JSON.stringify(bad))
  }
  t.throws(() => resolveOptions({ defaults: { healthPath: '/h' } as object, services: {} }), { key: 'defaults.healthPath', message: /only a service may set it/ })
  t.notMatch((() => { try { resolveOptions({ services: { a: { baseUrl: 'http://x', healthPath: '/h?token=abc' } } }) } catch (e) { return (e as Error).message } return '' })(), /abc/, 'a query value is not echoed')
  await t.rejects(checkServices({ services: {} }, { timeout: 0 }), InvalidOptionsError, 'a bad timeout rejects')
  await t.rejects(checkServices({ services: { a: { baseUrl: 'ftp://x' } } }), { name: 'InvalidOptionsError', message: /^services\.a\.baseUrl: / }, 'an invalid config rejects')
})

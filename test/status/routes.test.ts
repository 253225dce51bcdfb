import { createHash } from 'node:crypto'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import httpServices, { type HttpServicesOptions, type StatusSnapshot } from '../../index'
import { callChannel } from '../../lib/diagnostics/channels'
import { sendJson, startServer } from '../helpers/server'
import { waitUntil, within } from '../helpers/wait'

const kToken = 'page-guard-token-5e1d'

/** An app with the status page on (`statusPage`), and services on one real upstream that answers 200, or 503 on `/fail`. */
async function setup (t: Test, statusPage: HttpServicesOptions['statusPage'], services?: HttpServicesOptions['services']) {
  const upstream = await startServer((_req, res, seen) => sendJson(res, seen.url.startsWith('/fail') ? 503 : 200, { ok: true }))
  const app = Fastify()
  await app.register(httpServices, {
    statusPage,
    services: services ?? {
      billing: { baseUrl: upstream.url, retry: false, bulkhead: { maxConcurrent: 8 }, rateLimit: { rate: 50 }, cache: true },
      users: { baseUrl: [upstream.url, upstream.url.replace('127.0.0.1', 'localhost')], retry: false },
      plain: { baseUrl: upstream.url, breaker: false, retry: false }
    }
  })
  t.teardown(async () => { await app.close(); await upstream.close() })
  return { app, upstream }
}

const guard = {
  onRequest: async (request: { headers: Record<string, unknown> }, reply: { code: (n: number) => { send: (b: unknown) => unknown } }) => {
    if (request.headers.authorization !== `Bearer ${kToken}`) return await reply.code(401).send({ error: 'unauthorized' })
  }
}

t.test('bad statusPage options fail the registration naming the key', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['yes', 'statusPage'],
    [{ path: 'services' }, 'statusPage.path'],
    [{ path: '/services/' }, 'statusPage.path'],
    [{ path: '/svc/:id' }, 'statusPage.path'],
    [{ routeOpts: 5 }, 'statusPage.routeOpts'],
    [{ routeOpts: { url: '/x' } }, 'statusPage.routeOpts.url'],
    [{ routeOpts: { handler: () => {} } }, 'statusPage.routeOpts.handler'],
    [{ pth: '/x' }, 'statusPage.pth']
  ]
  for (const [statusPage, key] of cases) {
    const app = Fastify()
    t.teardown(async () => await app.close())
    await t.rejects(async () => { await app.register(httpServices, { statusPage: statusPage as HttpServicesOptions['statusPage'] }).ready() },
      { name: 'InvalidOptionsError', key, message: new RegExp(`^${key.replace(/\./g, '\\.')}: `) }, `${JSON.stringify(statusPage)}: ${key}`)
  }
})

t.test('off by default: no routes, nothing subscribed', async (t) => {
  const { app } = await setup(t, undefined)
  for (const url of ['/_services', '/_services.json', '/_services/events']) {
    t.equal((await app.inject({ url })).statusCode, 404, url)
  }
  t.notOk(callChannel.asyncEnd.hasSubscribers)
})

t.test('HEAD of the events route answers its headers and ends (no stream left open)', async (t) => {
  const { app } = await setup(t, true)
  const res = await within('the HEAD answer', app.inject({ method: 'HEAD', url: '/_services/events' }), 5000)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  t.equal(res.body, '')
})

t.test('keys left undefined take their defaults', async (t) => {
  const { app } = await setup(t, { path: undefined, routeOpts: undefined })
  t.equal((await app.inject({ url: '/_services' })).statusCode, 200)
  t.equal((await app.inject({ url: '/_services.json' })).statusCode, 200)
})

t.test('routeOpts reach all three routes: an onRequest hook guards the page, the JSON and the events', async (t) => {
  const { app } = await setup(t, { path: '/ops/services', routeOpts: guard })
  for (const url of ['/ops/services', '/ops/services.json', '/ops/services/events']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 401, `${url} without the token`)
    t.notMatch(res.body, /billing/)
  }
  t.notOk(callChannel.asyncEnd.hasSubscribers, 'a refused request starts no counting')
  t.equal((await app.inject({ url: '/ops/services', headers: { authorization: `Bearer ${kToken}` } })).statusCode, 200)
  t.equal((await app.inject({ url: '/ops/services.json', headers: { authorization: `Bearer ${kToken}` } })).statusCode, 200)
  t.equal((await app.inject({ url: '/_services' })).statusCode, 404, 'not at the default path')
})

t.test('the page is self-contained and sent with a CSP that allows exactly its inline script and style', async (t) => {
  const { app } = await setup(t, true)
  const res = await app.inject({ url: '/_services' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html; charset=utf-8/)
  t.equal(res.headers['cache-control'], 'no-store')
  const csp = String(res.headers['content-security-policy'])
  const script = /<script>([\s\S]*?)<\/script>/.exec(res.body)?.[1] ?? ''
  const style = /<style>([\s\S]*?)<\/style>/.exec(res.body)?.[1] ?? ''
  const sha = (s: string): string => createHash('sha256').update(s).digest('base64')
  t.ok(script.length > 1000 && style.length > 500)
  t.match(csp, /(^|; )default-src 'none'(;|$)/)
  t.match(csp, /(^|; )connect-src 'self'(;|$)/)
  t.match(csp, `script-src 'sha256-${sha(script)}'`)
  t.match(csp, `style-src 'sha256-${sha(style)}'`)
  t.notMatch(csp, /unsafe-inline|unsafe-eval|\*/)
  t.notMatch(res.body, /\b(src|href)="(?!data:)|@import|url\(/, 'nothing loaded from elsewhere')
  t.notMatch(res.body.replace('http://www.w3.org/2000/svg', ''), /https?:\/\//, 'no URL but the SVG namespace')
  t.equal(res.body.match(/<script/g)?.length, 1)
  t.equal(res.body.match(/<style/g)?.length, 1)
})

t.test('the JSON: a row per service with its breakers, rates, latencies, limits, pool and cache', async (t) => {
  const { app } = await setup(t, true)
  const first = JSON.parse((await app.inject({ url: '/_services.json' })).body) as StatusSnapshot
  t.same(first.services.map((s) => s.name), ['billing', 'users', 'plain'])
  t.equal(first.services[0].calls, 0, 'nothing counted before the page was first read')
  const billing = app.httpServices.client('billing')
  for (let i = 0; i < 8; i++) await billing.getJson('/ok')
  await t.rejects(billing.getJson('/fail'))
  await t.rejects(billing.getJson('/fail'))
  await app.httpServices.client('users').getJson('/ok')
  const res = await app.inject({ url: '/_services.json' })
  t.match(res.headers['content-type'], /^application\/json/)
  const snap = JSON.parse(res.body) as StatusSnapshot
  t.ok(Number.isFinite(Date.parse(snap.time)))
  t.ok(snap.windowSeconds > 0 && snap.windowSeconds <= 60)
  const [b, u, p] = snap.services
  t.equal(b.calls, 10)
  t.equal(b.errors, 2)
  t.equal(b.errorRate, 0.2)
  t.ok(b.requestsPerSecond > 0)
  t.ok(b.latency.p50 !== null && b.latency.p99 !== null && b.latency.p99 >= b.latency.p50)
  t.same(b.breaker, { state: 'closed', retryAfterMs: 0, upstreams: [] })
  t.match(b.bulkhead, { active: 0, queued: 0, maxConcurrent: 8 })
  t.match(b.rateLimit, { capacity: 50 })
  t.ok((b.rateLimit?.available ?? 0) <= 50)
  t.match(b.pool, { connected: Number, free: Number, pending: 0 })
  t.match(b.cache, { lookups: 10, hits: 0, hitRatio: 0 })
  t.equal(b.series.requests.length, 60)
  t.equal(b.series.errors.length, 60)
  t.equal(b.series.p99.length, 60)
  t.equal(u.breaker?.upstreams.length, 2, 'a breaker per upstream')
  t.same(u.breaker?.upstreams.map((x) => x.state), ['closed', 'closed'])
  t.equal(u.cache, null, 'no cache: null')
  t.equal(u.bulkhead, null)
  t.equal(u.rateLimit, null)
  t.equal(p.breaker, null, 'breaker: false: null')
})

/** GETs `url` and collects server-sent events until `count` arrived; rejects after `limit` ms. */
async function readEvents (url: string, count: number, limit: number): Promise<{ events: string[], res: IncomingMessage }> {
  return await within(`${count} events from ${url}`, new Promise((resolve, reject) => {
    const req = httpRequest(url, (res) => {
      let buffer = ''
      const events: string[] = []
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')
          if (data !== '') events.push(data)
        }
        // Resolved once `count` arrived; `events` keeps growing while the stream stays open.
        if (events.length === count) resolve({ events, res })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  }), limit)
}

t.test('the events: a snapshot at once and then every second; app.close() ends them at once', async (t) => {
  const { app } = await setup(t, true)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  await app.httpServices.client('billing').getJson('/ok')
  const { events, res } = await readEvents(`http://127.0.0.1:${port}/_services/events`, 3, 8000)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  t.equal(res.headers['cache-control'], 'no-store')
  for (const data of events) {
    const snap = JSON.parse(data) as StatusSnapshot
    t.same(snap.services.map((s) => s.name), ['billing', 'users', 'plain'])
  }
  t.ok(callChannel.asyncEnd.hasSubscribers, 'counting while a client watches')
  await app.httpServices.client('billing').getJson('/ok')
  const ended = new Promise<void>((resolve) => res.on('close', resolve))
  res.resume()
  await within('app.close() with an events stream open', app.close(), 3000)
  await within('the stream ended', ended, 1000)
  t.notOk(callChannel.asyncEnd.hasSubscribers, 'unsubscribed once the app closed')
})

t.test('two pages share the snapshots; one leaving lets its connection go, the other goes on, nothing logged', async (t) => {
  const upstream = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const problems: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { problems.push(line) } } } })
  await app.register(httpServices, { statusPage: true, services: { api: { baseUrl: upstream.url } } })
  t.teardown(async () => { await app.close(); await upstream.close() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const url = `http://127.0.0.1:${port}/_services/events`
  // `stays` keeps reading (its events array grows); `leaves` goes after its first snapshot.
  const stays = await readEvents(url, 1, 5000)
  const leaves = await readEvents(url, 1, 5000)
  leaves.res.destroy()
  let count = -1
  await waitUntil('the server let the leaving connection go', () => {
    app.server.getConnections((_err, n) => { count = n })
    return count === 1
  }, 3000, 20)
  const before = stays.events.length
  await waitUntil('the page that stayed got two more snapshots', () => stays.events.length >= before + 2, 5000, 20)
  stays.res.destroy()
  t.same(problems, [], 'no warning or error logged')
})

t.test('no secret, credential or query value appears on the page, in the JSON or in the events', async (t) => {
  const secrets = ['SECRET-bearer-81c2', 'SECRET-basic-pw-0d3e', 'SECRET-apikey-9a7b', 'SECRET-query-value-4f60']
  const upstream = await startServer((_req, res, seen) => sendJson(res, seen.url.includes('fail') ? 500 : 200, { ok: true }))
  t.teardown(async () => await upstream.close())
  const { app } = await setup(t, true, {
    bearer: { baseUrl: upstream.url, auth: { bearer: secrets[0] }, retry: { attempts: 1, baseDelay: 1 } },
    basic: { baseUrl: upstream.url, auth: { basic: { username: 'ops', password: secrets[1] } } },
    apikey: { baseUrl: upstream.url, auth: { apiKey: { value: secrets[2], query: 'api_key' } }, cache: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  await app.inject({ url: '/_services.json' })
  for (const name of ['bearer', 'basic', 'apikey']) {
    const client = app.httpServices.client(name)
    await client.getJson('/ok', { query: { token: secrets[3] } })
    await t.rejects(client.getJson(`/fail?token=${secrets[3]}`))
  }
  const page = (await app.inject({ url: '/_services' })).body
  const json = (await app.inject({ url: '/_services.json' })).body
  const { events, res } = await readEvents(`http://127.0.0.1:${port}/_services/events`, 2, 5000)
  res.destroy()
  const snap = JSON.parse(json) as StatusSnapshot
  t.equal(snap.services.find((s) => s.name === 'bearer')?.calls, 2, 'the calls were counted')
  t.equal(snap.services.find((s) => s.name === 'bearer')?.retries, 1)
  for (const [what, text] of [['page', page], ['JSON', json], ['events', events.join('\n')]]) {
    for (const secret of [...secrets, Buffer.from(`ops:${secrets[1]}`).toString('base64')]) {
      t.notOk(text.includes(secret), `${what}: no ${secret.slice(0, 18)}…`)
    }
    t.notMatch(text, /token=|api_key|\/fail|\/ok/, `${what}: no path or query`)
  }
})

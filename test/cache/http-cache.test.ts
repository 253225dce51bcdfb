import t from 'tap'
import Fastify from 'fastify'
import httpServices from '../../index'
import { startServer } from '../helpers/server'
import { fakeDateClock, openRegistry } from './helpers'

t.test('a fresh entry is a hit: the upstream sees one request, each response says what the cache did', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ n: upstream.requests.length }))
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { users: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('users')

  const first = await client.get('/users/1')
  t.equal(first.cache, 'miss')
  t.same(await first.json(), { n: 1 })
  const second = await client.get('/users/1')
  t.equal(second.cache, 'hit')
  t.equal(second.attempts, 0)
  t.match(second.headers.age, /^[01]$/, 'an Age header (the Date header has whole seconds)')
  t.same(await second.json(), { n: 1 })
  t.same(await client.getJson('/users/1'), { n: 1 }, 'the *Json helpers read a hit too')
  t.equal(upstream.requests.length, 1)
  t.same(services.stats().users.cache, { hit: 2, revalidated: 0, miss: 1, stale: 0 })
  t.same(services.stats().users.policies.slice(0, 1), ['cache'])
})

t.test('a body read as a stream on a miss is stored for the next call, bytes intact', async (t) => {
  const bytes = Buffer.from([0, 1, 2, 250, 251, 255])
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'application/octet-stream')
    res.end(bytes)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { blobs: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('blobs')
  const first = await client.get('/b')
  const chunks: Buffer[] = []
  for await (const c of first.body) chunks.push(c as Buffer)
  t.same(Buffer.concat(chunks), bytes)
  const second = await client.get('/b')
  t.equal(second.cache, 'hit')
  t.same(Buffer.from(await second.arrayBuffer()), bytes)
  t.equal(upstream.requests.length, 1)
})

t.test('a stale entry is revalidated with its ETag; the 304 serves it and refreshes it', async (t) => {
  const clock = fakeDateClock(t)
  const upstream = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString()) // the fake clock's date (Node's own is the real one)
    res.setHeader('cache-control', 'max-age=10')
    res.setHeader('etag', '"v1"')
    if (req.headers['if-none-match'] === '"v1"') {
      res.statusCode = 304
      res.end()
      return
    }
    res.end('body v1')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { docs: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('docs')

  const first = await client.get('/d')
  t.equal(first.cache, 'miss')
  t.equal(await first.text(), 'body v1', 'a streamed body is stored once it has been read')
  clock.advance(11_000)
  const revalidated = await client.get('/d')
  t.equal(revalidated.cache, 'revalidated')
  t.equal(revalidated.status, 200)
  t.equal(await revalidated.text(), 'body v1')
  t.equal(upstream.requests.length, 2)
  t.equal(upstream.requests[1].headers['if-none-match'], '"v1"')
  const hit = await client.get('/d')
  t.equal(hit.cache, 'hit', 'the 304 refreshed the entry: fresh again')
  t.equal(await hit.text(), 'body v1')
  t.equal(upstream.requests.length, 2)
})

t.test('a 304 with another ETag is not taken for the stored body: the call fetches afresh', async (t) => {
  const clock = fakeDateClock(t)
  let version = 1
  const upstream = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    res.setHeader('cache-control', 'max-age=10')
    if (req.headers['if-none-match'] !== undefined) {
      res.setHeader('etag', '"other"')
      res.statusCode = 304
      res.end()
      return
    }
    res.setHeader('etag', `"v${version}"`)
    res.end(`body v${version++}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { docs: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('docs')
  await (await client.get('/d')).text()
  clock.advance(11_000)
  const res = await client.get('/d')
  t.equal(res.cache, 'miss')
  t.equal(await res.text(), 'body v2')
  t.equal(upstream.requests[2].headers['if-none-match'], undefined, 'the refetch is not conditional')
})

t.test('Vary: each variant is stored on its own', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('vary', 'accept-language')
    res.end(`hello in ${req.headers['accept-language'] ?? 'none'}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { i18n: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('i18n')
  const get = async (lang: string): Promise<[string | undefined, string]> => {
    // text() reads the body: a streamed body is stored once read to its end
    const res = await client.get('/greeting', { headers: { 'accept-language': lang } })
    return [res.cache, await res.text()]
  }
  t.same(await get('fr'), ['miss', 'hello in fr'])
  t.same(await get('de'), ['miss', 'hello in de'])
  t.same(await get('fr'), ['hit', 'hello in fr'])
  t.same(await get('de'), ['hit', 'hello in de'])
  t.equal(upstream.requests.length, 2)
})

t.test('no-store responses and no-store requests are never stored', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', req.url === '/secret' ? 'no-store' : 'max-age=60')
    res.end('"x"')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('s')
  for (let i = 0; i < 2; i++) t.equal((await client.getJson('/secret').then(() => client.get('/secret'))).cache, 'miss')
  for (let i = 0; i < 2; i++) t.equal((await client.get('/open', { headers: { 'cache-control': 'no-store' } })).cache, 'miss')
  t.equal(await (await client.get('/open')).text(), '"x"')
  t.equal((await client.get('/open')).cache, 'hit', 'a plain GET stores it')
  t.equal(upstream.requests.length, 7)
})

t.test('shared cache: answers to requests with credentials are stored only when the response allows it', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', req.url === '/public' ? 'public, max-age=60' : 'max-age=60')
    res.end(`for ${req.headers.authorization ?? req.headers.cookie ?? req.headers['x-api-key'] ?? 'anyone'}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, {
    services: {
      shared: { baseUrl: upstream.url, cache: true },
      keyed: { baseUrl: upstream.url, cache: true, headers: { 'x-api-key': 'k1' } },
      mine: { baseUrl: upstream.url, cache: { type: 'private' } }
    }
  })
  const shared = services.client('shared')
  for (const headers of [{ authorization: 'Bearer alice' }, { cookie: 'session=alice' }]) {
    t.equal(await (await shared.get('/me', { headers })).text(), `for ${Object.values(headers)[0]}`)
    const again = await shared.get('/me', { headers })
    await again.text()
    t.equal(again.cache, 'miss', `not stored with ${Object.keys(headers)[0]}`)
  }
  t.equal(await (await services.client('keyed').get('/me')).text(), 'for k1')
  t.equal((await services.client('keyed').get('/me')).cache, 'miss', "not stored with the service's API key header")
  t.equal(await (await shared.get('/public', { headers: { authorization: 'Bearer alice' } })).text(), 'for Bearer alice')
  t.equal((await shared.get('/public', { headers: { authorization: 'Bearer bob' } })).cache, 'hit', 'public allows it')

  const mine = services.client('mine')
  t.equal(await (await mine.get('/me', { headers: { cookie: 'session=alice' } })).text(), 'for session=alice')
  t.equal((await mine.get('/me', { headers: { cookie: 'session=alice' } })).cache, 'hit', 'a private cache stores it')
})

t.test('private cache: answers to requests with credentials are stored per credentials, and never served for others', async (t) => {
  const seen: Array<Record<string, unknown>> = []
  const upstream = await startServer((req, res) => {
    seen.push({ ...req.headers })
    res.setHeader('cache-control', 'max-age=60')
    res.end(`for ${req.headers.authorization ?? req.headers.cookie ?? req.headers['x-api-key'] ?? 'anyone'}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { mine: { baseUrl: upstream.url, cache: { type: 'private' } } } })
  const mine = services.client('mine')
  const call = async (options: { headers?: Record<string, string>, token?: string }): Promise<[string, string | undefined]> => {
    const res = await mine.get('/me', options)
    return [await res.text(), res.cache]
  }
  for (const [alice, bob] of [
    [{ headers: { authorization: 'Bearer alice' } }, { headers: { authorization: 'Bearer bob' } }],
    [{ headers: { cookie: 'session=alice' } }, { headers: { cookie: 'session=bob' } }],
    [{ headers: { 'x-api-key': 'alice-key' } }, { headers: { 'x-api-key': 'bob-key' } }],
    [{ token: 'alice-token' }, { token: 'bob-token' }]
  ]) {
    const what = JSON.stringify(alice)
    const [aliceBody] = await call(alice)
    t.same(await call(alice), [aliceBody, 'hit'], `${what}: stored, and served again for the same credentials`)
    const [bobBody, bobCache] = await call(bob)
    t.equal(bobCache, 'miss', `${what}: other credentials get their own answer`)
    t.not(bobBody, aliceBody)
    t.same(await call(bob), [bobBody, 'hit'])
    t.same(await call(alice), [aliceBody, 'hit'], 'each keeps its own entry')
  }
  t.same(await call({}), ['for anyone', 'miss'], 'a request without credentials is not served what a credentialed one got')
  t.same(await call({}), ['for anyone', 'hit'])
  t.equal(seen.length, 9, 'one upstream request per set of credentials')
  t.notOk(seen.some((h) => Object.keys(h).some((name) => name.startsWith('x-fastify-http-services'))), 'the key\'s hash is never sent')
})

t.test('private cache: a credential in the service\'s own auth header (forward, apiKey) partitions entries too', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end(`for ${req.headers['x-user-token'] ?? req.headers['x-key'] ?? 'anyone'}`)
  })
  t.teardown(upstream.close)
  const app = Fastify()
  await app.register(httpServices, {
    services: {
      fwd: { baseUrl: upstream.url, cache: { type: 'private' }, auth: { forward: 'X-User-Token' } },
      keyed: { baseUrl: upstream.url, cache: { type: 'private' }, auth: { apiKey: { value: 'svc-key', header: 'x-key' } } }
    }
  })
  app.get('/call', async (request) => {
    const res = await request.httpClient('fwd').get('/me')
    return { body: await res.text(), cache: res.cache }
  })
  t.teardown(() => app.close())
  const as = async (user: string): Promise<unknown> => (await app.inject({ url: '/call', headers: { 'x-user-token': user } })).json()
  t.same(await as('alice'), { body: 'for alice', cache: 'miss' })
  t.same(await as('alice'), { body: 'for alice', cache: 'hit' }, 'forward: stored for that user')
  t.same(await as('bob'), { body: 'for bob', cache: 'miss' }, 'forward: another user\'s header is other credentials')
  t.same(await as('bob'), { body: 'for bob', cache: 'hit' })

  const keyed = app.httpServices.client('keyed')
  const call = async (key?: string): Promise<[string, string | undefined]> => {
    const res = await keyed.get('/me', key === undefined ? {} : { headers: { 'x-key': key } })
    return [await res.text(), res.cache]
  }
  t.same(await call(), ['for svc-key', 'miss'])
  t.same(await call(), ['for svc-key', 'hit'], 'apiKey: the service\'s own key is one principal')
  t.same(await call('alice-key'), ['for alice-key', 'miss'], 'apiKey: a key the call sets in that header is other credentials')
  t.same(await call('alice-key'), ['for alice-key', 'hit'])
  t.same(await call(), ['for svc-key', 'hit'])
  t.equal(upstream.requests.length, 4)
})

t.test('private cache: an entry stored without credentials is not served for credentials, in either order', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end(`for ${req.headers.authorization ?? 'anyone'}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { mine: { baseUrl: upstream.url, cache: { type: 'private' } } } })
  const mine = services.client('mine')
  const call = async (path: string, authorization?: string): Promise<[string, string | undefined]> => {
    const res = await mine.get(path, authorization === undefined ? {} : { headers: { authorization } })
    return [await res.text(), res.cache]
  }
  t.same(await call('/a'), ['for anyone', 'miss'])
  t.same(await call('/a', 'Bearer alice'), ['for Bearer alice', 'miss'], 'anonymous first: credentials get their own answer')
  t.same(await call('/b', 'Bearer alice'), ['for Bearer alice', 'miss'])
  t.same(await call('/b'), ['for anyone', 'miss'], 'credentials first: no credentials get their own answer')
  for (const path of ['/a', '/b']) {
    t.same(await call(path), ['for anyone', 'hit'], `${path}: each kept its own entry`)
    t.same(await call(path, 'Bearer alice'), ['for Bearer alice', 'hit'])
  }
  t.equal(upstream.requests.length, 4)
})

t.test('private cache: calls with auth: false and normal calls of a service with auth never share an entry', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end(`for ${req.headers.authorization ?? 'anyone'}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, {
    services: {
      fixed: { baseUrl: upstream.url, cache: { type: 'private' }, auth: { bearer: 'svc' } },
      fn: { baseUrl: upstream.url, cache: { type: 'private' }, auth: { bearer: () => 'svc' } }
    }
  })
  for (const name of ['fixed', 'fn']) {
    const client = services.client(name)
    const call = async (path: string, auth?: false): Promise<[string, string | undefined]> => {
      const res = await client.get(path, auth === false ? { auth } : {})
      return [await res.text(), res.cache]
    }
    t.same(await call('/a'), ['for Bearer svc', 'miss'])
    t.same(await call('/a', false), ['for anyone', 'miss'], `${name}: auth: false is not served the service's answer`)
    t.same(await call('/b', false), ['for anyone', 'miss'])
    t.same(await call('/b'), ['for Bearer svc', 'miss'], `${name}: a normal call is not served what auth: false stored`)
    for (const path of ['/a', '/b']) {
      t.same(await call(path), ['for Bearer svc', 'hit'], `${name} ${path}: each kept its own entry`)
      t.same(await call(path, false), ['for anyone', 'hit'])
    }
  }
  t.equal(upstream.requests.length, 8)
})

t.test('private cache: a response with Set-Cookie is not stored', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'private, max-age=60')
    res.setHeader('set-cookie', 'session=for-the-first-caller')
    res.end('x')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { mine: { baseUrl: upstream.url, cache: { type: 'private' } } } })
  const mine = services.client('mine')
  await (await mine.get('/login')).text()
  const again = await mine.get('/login')
  await again.text()
  t.equal(again.cache, 'miss', 'another call would get the first caller\'s cookie')
  t.equal(upstream.requests.length, 2)
})

t.test('private cache: stale-while-revalidate revalidates with the caller\'s token, once per set of credentials', async (t) => {
  const clock = fakeDateClock(t)
  // Revalidations are held until two are in flight at once (or 500 ms passed: then one was not sent beside the other).
  const held: Array<() => void> = []
  let alone = false
  const upstream = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    res.setHeader('cache-control', 'max-age=10, stale-while-revalidate=60')
    const answer = (): void => { res.end(`for ${req.headers.authorization ?? 'anyone'} #${upstream.requests.length}`) }
    if (req.headers['if-modified-since'] === undefined) return answer()
    held.push(answer)
    if (held.length === 2) for (const release of held.splice(0)) release()
    else setTimeout(() => { if (held.includes(answer)) { alone = true; held.splice(held.indexOf(answer), 1); answer() } }, 500)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { mine: { baseUrl: upstream.url, cache: { type: 'private' } } } })
  const mine = services.client('mine')
  const call = async (token: string): Promise<[string, string | undefined]> => {
    const res = await mine.get('/me', { token })
    return [await res.text(), res.cache]
  }
  t.same(await call('alice'), ['for Bearer alice #1', 'miss'])
  t.same(await call('bob'), ['for Bearer bob #2', 'miss'])
  clock.advance(20_000)
  t.same(await call('alice'), ['for Bearer alice #1', 'stale'])
  t.same(await call('bob'), ['for Bearer bob #2', 'stale'])
  // The background revalidations store their answers once their bodies ended: poll until both show.
  let seen: Array<[string, string | undefined]> = []
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    seen = [await call('alice'), await call('bob')]
    if (seen.every(([, cache]) => cache === 'hit') && !seen.some(([body]) => /#[12]$/.test(body))) break
  }
  t.notOk(alone, 'each set of credentials has a background revalidation of its own')
  t.same(upstream.requests.slice(2, 4).map((r) => r.headers.authorization).sort(), ['Bearer alice', 'Bearer bob'], 'one background revalidation each, with its token')
  t.match(seen, [[/^for Bearer alice #[34]$/, 'hit'], [/^for Bearer bob #[34]$/, 'hit']], 'each stored for its own credentials')
})

t.test('private responses: stored by a private cache, not by a shared one', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'private, max-age=60')
    res.end('mine')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, {
    services: { shared: { baseUrl: upstream.url, cache: true }, mine: { baseUrl: upstream.url, cache: { type: 'private' } } }
  })
  await (await services.client('shared').get('/p')).text()
  t.equal((await services.client('shared').get('/p')).cache, 'miss')
  await (await services.client('mine').get('/p')).text()
  t.equal((await services.client('mine').get('/p')).cache, 'hit')
})

t.test('a successful POST invalidates the stored GET of its path', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end('x')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('s')
  await (await client.get('/items')).text()
  t.equal((await client.get('/items')).cache, 'hit')
  const posted = await client.post('/items', { json: { a: 1 } })
  t.equal(posted.cache, 'miss')
  t.equal((await client.get('/items')).cache, 'miss')
})

t.test('stale-while-revalidate: the stale entry answers at once and is refreshed in the background', async (t) => {
  const clock = fakeDateClock(t)
  let version = 1
  const upstream = await startServer((_req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    res.setHeader('cache-control', 'max-age=10, stale-while-revalidate=60')
    res.end(`v${version++}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('s')
  t.equal(await (await client.get('/x')).text(), 'v1')
  clock.advance(20_000)
  const stale = await client.get('/x')
  t.equal(stale.cache, 'stale')
  t.equal(await stale.text(), 'v1')
  // The background revalidation stores its answer once its body ended: poll (hits reach nothing) until it shows.
  let text = 'v1'
  for (let i = 0; i < 200 && text === 'v1'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
    text = await (await client.get('/x')).text()
  }
  t.equal(text, 'v2')
  t.equal(upstream.requests.length, 2, 'one background revalidation')
})

t.test('malformed private directives (CVE-2026-13697, fixed in undici 7.29): not stored by a shared cache, no crash', async (t) => {
  const upstream = await startServer((req, res) => {
    res.setHeader('cache-control', req.url === '/empty' ? 'private="", max-age=60' : 'private, private="set-cookie", max-age=60')
    res.end(`for ${req.url}`)
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('s')
  for (const path of ['/empty', '/mixed']) {
    t.equal(await (await client.get(path)).text(), `for ${path}`)
    const again = await client.get(path)
    t.equal(again.cache, 'miss', `${path}: not stored`)
    await again.text()
  }
})

t.test('a body the *Json helpers read on a miss is stored as it is', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'application/json')
    res.end('{"ok":true}')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  const client = services.client('s')
  t.same(await client.getJson('/j'), { ok: true })
  const hit = await client.get('/j')
  t.equal(hit.cache, 'hit')
  t.same(await hit.json(), { ok: true })
  t.equal(upstream.requests.length, 1)
})

t.test('through the plugin: request.httpClient() calls are cached, and the route can return the cached response', async (t) => {
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'text/plain')
    res.end('from upstream')
  })
  t.teardown(upstream.close)
  const app = Fastify()
  await app.register(httpServices, { services: { up: { baseUrl: upstream.url, cache: true } } })
  app.get('/', async (request, reply) => {
    const res = await request.httpClient('up').get('/thing')
    reply.header('x-cache', res.cache)
    return await res.text()
  })
  t.teardown(() => app.close())
  const first = await app.inject('/')
  const second = await app.inject('/')
  t.same([first.headers['x-cache'], second.headers['x-cache']], ['miss', 'hit'])
  t.equal(second.body, 'from upstream')
  t.equal(upstream.requests.length, 1)
})

t.test('every outcome is published on the cache:served channel', async (t) => {
  const diagnosticsChannel = await import('node:diagnostics_channel')
  const seen: Array<{ cache: string, age: number | undefined, path: string }> = []
  const listener = (m: unknown): void => {
    const message = m as { cache: string, age: number | undefined, call: { path: string } }
    seen.push({ cache: message.cache, age: message.age, path: message.call.path })
  }
  diagnosticsChannel.subscribe('fastify-http-services:cache:served', listener)
  t.teardown(() => diagnosticsChannel.unsubscribe('fastify-http-services:cache:served', listener))
  const upstream = await startServer((_req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.end('"x"')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, cache: true } } })
  await services.client('s').getJson('/c')
  await services.client('s').getJson('/c')
  t.match(seen, [{ cache: 'miss', age: undefined, path: '/c' }, { cache: 'hit', path: '/c' }])
})

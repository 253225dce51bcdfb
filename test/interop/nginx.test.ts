import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { gunzipSync } from 'node:zlib'
import Fastify from 'fastify'
import t from 'tap'
import { request } from 'undici'
import httpServices, { HttpStatusError, TlsError, createHttpServices, type Logger, type ServiceOptions } from '../../index'
import { testCerts } from '../helpers/certs'
import { interopBinary, startNginx, writeIn, type Nginx } from '../helpers/interop'

// Real nginx (Debian's nginx-light) on loopback: TLS with the test CA, HTTP/2, gzip, Retry-After, large files.
const nginxBinary = interopBinary(t, 'nginx', 'nginx-light')
const skip = nginxBinary.skip
const certs = testCerts()

let shared: Promise<Nginx> | undefined
/** One nginx for the whole file, started by the first test that needs it and stopped when the file ends. */
async function nginx (): Promise<Nginx> {
  shared ??= startNginx(t, nginxBinary.path as string)
  return await shared
}

async function client (tt: tap.Test, options: Partial<ServiceOptions> = {}, logger?: Logger) {
  const n = await nginx()
  const services = createHttpServices({ logger, defaults: { retry: false }, services: { nginx: { baseUrl: n.httpsUrl, tls: { ca: certs.ca }, ...options } } })
  await services.open()
  tt.teardown(async () => await services.close())
  return services.client('nginx')
}

t.test('TLS with the test CA; allowH2 negotiates HTTP/2 and is off by default', { skip }, async (t) => {
  const h2 = await client(t, { allowH2: true })
  t.same(await h2.getJson('/protocol'), { protocol: 'HTTP/2.0' })
  const h1 = await client(t)
  t.same(await h1.getJson('/protocol'), { protocol: 'HTTP/1.1' })
  const untrusted = await client(t, { tls: { ca: certs.otherCa } })
  const err = await untrusted.get('/protocol').catch((e: unknown) => e)
  t.ok(err instanceof TlsError, `an unknown CA is refused (got ${String(err)})`)
})

t.test('a gzipped JSON document is decoded; decompress: false passes the gzip bytes through', { skip }, async (t) => {
  const n = await nginx()
  const doc = { items: Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ['a', 'b', 'c'] })) }
  const text = JSON.stringify(doc)
  writeIn(n.www, 'data.json', text)
  const api = await client(t, { allowH2: true })
  const res = await api.get('/data.json')
  t.equal(res.headers['content-encoding'], undefined, 'the decoded response no longer says gzip')
  t.same(await res.json(), doc)
  const raw = await client(t, { allowH2: true, decompress: false })
  const passed = await raw.get('/data.json', { headers: { 'accept-encoding': 'gzip' } })
  t.equal(passed.headers['content-encoding'], 'gzip', 'nginx compressed it')
  const bytes = Buffer.from(await passed.arrayBuffer())
  t.ok(bytes.length < text.length / 4, `${bytes.length} compressed bytes for ${text.length}`)
  t.equal(gunzipSync(bytes).toString(), text)
})

t.test('a 503 with Retry-After: 1 is retried after that second and the second attempt succeeds', { skip }, async (t) => {
  const warnings: string[] = []
  const logger: Logger = { debug () {}, info () {}, error () {}, warn (_obj, msg) { warnings.push(msg ?? '') }, child () { return logger } }
  const api = await client(t, { allowH2: true, retry: { attempts: 2, baseDelay: 1, maxDelay: 1 }, deadlineHeaders: { remaining: false } }, logger)
  const res = await api.get('/flaky')
  t.equal(res.status, 200)
  t.equal(res.attempts, 2)
  t.same(await res.json(), { attempt: '2' }, 'nginx saw the second attempt numbered 2')
  t.match(warnings, [/retrying GET nginx after status 503 .*, next in 1000 ms/], 'the wait was the Retry-After, not the 1 ms backoff')
})

t.test('a Retry-After longer than maxRetryAfter fails at once; the error carries retryAfter', { skip }, async (t) => {
  const api = await client(t, { allowH2: true, retry: { attempts: 2, baseDelay: 1, maxDelay: 1, maxRetryAfter: 500 } })
  const err = await api.get('/busy').catch((e: unknown) => e as HttpStatusError)
  t.ok(err instanceof HttpStatusError, `an HttpStatusError (got ${String(err)})`)
  t.match(err, { status: 503, statusCode: 502, retryAfter: 1, attempts: 1, headers: { 'retry-after': '1' } })
})

t.test('a 30 MB static file streams through a Fastify route intact', { skip }, async (t) => {
  const n = await nginx()
  const hash = createHash('sha256')
  const size = 30 * 1024 * 1024
  const out = createWriteStream(join(n.www, 'files', 'big.bin'))
  await pipeline(async function * () {
    for (let i = 0; i < size; i += 1024 * 1024) {
      const chunk = randomBytes(1024 * 1024)
      hash.update(chunk)
      yield chunk
    }
  }, out)
  const expected = hash.digest('hex')

  const app = Fastify()
  await app.register(httpServices, { services: { nginx: { baseUrl: n.httpsUrl, tls: { ca: certs.ca } } } })
  app.get('/download', async (req, reply) => {
    const res = await req.httpClient('nginx').stream('GET', '/files/big.bin')
    reply.header('content-type', res.headers['content-type'])
    return await reply.send(res.body)
  })
  t.teardown(async () => await app.close())
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await request(`${url}/download`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/octet-stream')
  const got = createHash('sha256')
  let length = 0
  for await (const chunk of res.body) {
    got.update(chunk as Buffer)
    length += (chunk as Buffer).length
  }
  t.equal(length, size)
  t.equal(got.digest('hex'), expected, 'sha256 of what came out of the route matches the file nginx served')
})

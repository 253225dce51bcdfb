import { spawn } from 'node:child_process'
import { get as httpGet } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createServer as createHttpsServer } from 'node:https'
import Fastify from 'fastify'
import { request } from 'undici'
import httpServices, { createHttpServices } from '../index'
import { testCerts } from './helpers/certs'
import { closedPort, startServer } from './helpers/server'

/**
 * Runs a busy scenario (every kind of call, success and failure, then close) in a child process and proves the
 * child exits by itself: nothing the library opened (sockets, pools, timers, listeners on servers) is left.
 */
async function scenario (): Promise<void> {
  const certs = testCerts()

  const plain = await startServer((req, res) => {
    if (req.url?.startsWith('/never') === true) return
    if (req.url === '/stall') { res.writeHead(200); res.write('x'); return }
    if (req.url === '/redirect') { res.writeHead(302, { location: '/ok' }); res.end(); return }
    if (req.url === '/big') { res.writeHead(200); res.end(Buffer.alloc(256 * 1024)); return }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const other = await startServer((_req, res) => { res.end('{"ok":true}') })
  const tls = await startServer((_req, res) => { res.end('{"tls":true}') },
    createHttpsServer({ key: certs.serverKey, cert: certs.serverCert, ca: certs.ca, requestCert: true }))
  const refused = await closedPort()

  const app = Fastify()
  await app.register(httpServices, {
    closeTimeout: 200,
    requestDeadline: 5000,
    services: {
      api: { baseUrl: plain.url, followRedirects: 2, retry: false, timeout: { headers: 2000, body: 2000 } },
      pair: { baseUrl: [plain.url, other.url], retry: false },
      secure: { baseUrl: `https://127.0.0.1:${tls.port}`, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } },
      down: { baseUrl: `http://127.0.0.1:${refused}`, retry: false }
    }
  })
  app.get('/all', async (req) => {
    const api = req.httpClient('api')
    await Promise.allSettled([
      api.getJson('/ok'),
      api.get('/redirect').then(async (r) => await r.dump()),
      api.get('/never', { timeout: 50 }),
      api.get('/stall', { timeout: 50 }).then(async (r) => await r.text()),
      req.httpClient('pair').getJson('/a'),
      req.httpClient('pair').getJson('/b'),
      req.httpClient('secure').getJson('/'),
      req.httpClient('down').get('/'),
      api.get('/big').then((r) => { r.destroy() })
    ])
    return { done: true }
  })
  app.get('/stream', async (req, reply) => reply.send((await req.httpClient('api').stream('GET', '/big')).body))
  app.get('/hang', async (req) => await req.httpClient('api').get('/never-inbound'))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  await (await request(`${base}/all`)).body.json()
  await (await request(`${base}/stream`)).body.arrayBuffer()
  // An inbound client that goes away mid-call (its own connection, destroyed).
  const hang = httpGet(`${base}/hang`, { agent: false })
  hang.on('error', () => {})
  while (!plain.requests.some((r) => r.url === '/never-inbound')) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => { hang.once('close', resolve); hang.destroy() })

  const worker = createHttpServices({ services: { api: { baseUrl: plain.url, timeout: 300 } } })
  await worker.open()
  await worker.client('api').getJson('/ok')
  const stuck = worker.client('api').get('/never-worker').catch(() => {})

  await app.close()
  await worker.close()
  await stuck
  // Every pooled socket must be closed by now: the downstream servers see no connection left (the FINs may take
  // a moment to arrive). Checked before the servers' own close(), which would destroy leftovers and hide them.
  const counts = async (): Promise<number[]> => await Promise.all([plain, other, tls].map(async (s) =>
    await new Promise<number>((resolve) => s.server.getConnections((_err, n) => resolve(n)))))
  for (let i = 0; i < 100 && (await counts()).some((n) => n > 0); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  process.stdout.write(`open connections: ${(await counts()).join(',')}\n`)
  await plain.close()
  await other.close()
  await tls.close()
  process.stdout.write('scenario done\n')
  // Only runs if something keeps the process alive: name the culprits.
  setTimeout(() => { process.stderr.write(`still open: ${JSON.stringify(process.getActiveResourcesInfo())}\n`) }, 1000).unref()
}

async function parent (): Promise<void> {
  // tap is loaded only here: the child must not start a TAP run of its own.
  const { default: t } = await import('tap')
  t.test('after close, no handle is left: a process that used every kind of call exits by itself', async (t) => {
    // tsx (esbuild) loads the TypeScript sources much faster than tap's loader, which matters on a busy machine.
    const child = spawn(process.execPath, ['--import', 'tsx', __filename], {
      env: { ...process.env, HTTP_SERVICES_OPEN_HANDLES_CHILD: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const killer = setTimeout(() => child.kill('SIGKILL'), 45_000)
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.once('exit', (c, s) => resolve([c, s]))
    })
    clearTimeout(killer)
    t.match(stdout, /scenario done/, 'the scenario ran to its end')
    t.match(stdout, /open connections: 0,0,0\n/, 'the downstream servers saw every pooled connection closed')
    t.equal(signal, null, 'the child was not killed: it exited on its own')
    t.equal(code, 0, `exit code 0${stderr !== '' ? `; stderr: ${stderr}` : ''}`)
    t.notMatch(stderr, /still open/, 'nothing was still open a second after close')
  })
}

if (process.env.HTTP_SERVICES_OPEN_HANDLES_CHILD === '1') {
  scenario().catch((err) => {
    process.stderr.write(`scenario failed: ${String(err?.stack ?? err)}\n`)
    process.exitCode = 1
  })
} else {
  void parent()
}

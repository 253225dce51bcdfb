import t from 'tap'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { checkServices } from '../../lib/check/run'
import type { CheckStep } from '../../lib/check/types'
import { startProxy } from '../helpers/proxy'
import { closedPort } from '../helpers/server'
import { within } from '../helpers/wait'
import { checkCerts, httpsServer, tempDir } from './helpers'

const steps = (report: Awaited<ReturnType<typeof checkServices>>, i = 0): Array<Pick<CheckStep, 'step' | 'status' | 'target' | 'result'>> =>
  report.services[i].steps.map(({ step, status, target, result }) => ({ step, status, target, result }))

t.test('a refused port fails its tcp step with the errno and the address, and no health GET is tried', async (t) => {
  const port = await closedPort()
  const report = await within('the check', checkServices({
    services: { gone: { baseUrl: `http://127.0.0.1:${port}`, healthPath: '/health' } }
  }, { timeout: 3000 }), 20_000)
  t.same(steps(report), [
    { step: 'dns', status: 'ok', target: '127.0.0.1', result: '127.0.0.1 (an IP address)' },
    { step: 'tcp', status: 'fail', target: `127.0.0.1:${port}`, result: `ECONNREFUSED 127.0.0.1:${port}` },
    { step: 'health', status: 'skip', target: `http://127.0.0.1:${port}/health`, result: 'not probed: the upstream could not be reached' }
  ])
  t.equal(report.services[0].steps[1].code, 'ECONNREFUSED')
  t.equal(report.status, 'fail')
})

t.test('a name that does not resolve fails its dns step', async (t) => {
  const report = await within('the check', checkServices({
    services: { nowhere: { baseUrl: 'http://no-such-host.invalid:8080' } }
  }, { timeout: 3000 }), 20_000)
  const [dns] = report.services[0].steps
  t.equal(dns.step, 'dns')
  t.equal(dns.status, 'fail')
  t.match(dns.result, /^(ENOTFOUND|EAI_AGAIN: no-such-host\.invalid could not be resolved|resolving no-such-host\.invalid timed out after 3000 ms)/)
  t.same(dns.addresses, [])
  t.equal(report.services[0].steps.length, 1, 'nothing to connect to')
})

t.test('localhost resolves to its addresses; a dead one beside a live one is a warning, not a failure', async (t) => {
  const server = createServer((_req, res) => res.end('ok'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = (server.address() as import('node:net').AddressInfo).port
  const report = await checkServices({ services: { local: { baseUrl: `http://localhost:${port}`, healthPath: '/' } } }, { timeout: 3000 })
  const [dns, ...rest] = report.services[0].steps
  t.ok(dns.addresses?.includes('127.0.0.1'), `localhost resolves to 127.0.0.1 (${dns.result})`)
  const tcp = rest.filter((s) => s.step === 'tcp')
  t.equal(tcp.length, dns.addresses?.length, 'one connect per address')
  t.equal(tcp.find((s) => s.target === `127.0.0.1:${port}`)?.status, 'ok')
  for (const s of tcp.filter((s) => s.target !== `127.0.0.1:${port}`)) t.equal(s.status, 'warn', `${s.target}: ${s.result}`)
  t.equal(rest.find((s) => s.step === 'health')?.status, 'ok')
  t.not(report.status, 'fail')
})

t.test('a Unix socket service is connected through its socketPath, TLS included', async (t) => {
  const certs = checkCerts()
  const dir = tempDir(t)
  const path = join(dir, 's.sock')
  const { createServer: createHttps } = await import('node:https')
  const server = createHttps({ cert: certs.good.cert, key: certs.good.key }, (_req, res) => res.end('ok'))
  await new Promise<void>((resolve) => server.listen(path, resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const report = await checkServices({
    services: { sock: { baseUrl: 'https://localhost', socketPath: path, tls: { ca: certs.ca }, healthPath: '/ready' } }
  }, { timeout: 3000 })
  const s = steps(report)
  t.same(s.map((x) => [x.step, x.status, x.target]), [
    ['tcp', 'ok', path],
    ['tls', 'ok', 'localhost'],
    ['health', 'ok', 'https://localhost/ready']
  ], JSON.stringify(s))
  const missing = await checkServices({ services: { sock: { baseUrl: 'http://localhost', socketPath: join(dir, 'none.sock') } } }, { timeout: 3000 })
  t.equal(missing.services[0].steps[0].status, 'fail')
  t.equal(missing.services[0].steps[0].result, `ENOENT ${join(dir, 'none.sock')}`)
})

t.test('through a proxy: the proxy is resolved and connected, the upstream reached with CONNECT, its TLS checked through the tunnel', async (t) => {
  const certs = checkCerts()
  const upstream = await httpsServer(t, certs.good, (_req, res) => { res.end('ok') })
  const proxy = await startProxy({ auth: { username: 'user', password: 's3cret-proxy' } })
  t.teardown(proxy.close)
  const uri = `http://user:s3cret-proxy@127.0.0.1:${proxy.port}`
  const report = await within('the check', checkServices({
    services: { viaProxy: { baseUrl: `https://localhost:${upstream.port}`, proxy: uri, tls: { ca: certs.ca }, healthPath: '/health' } }
  }, { timeout: 3000 }), 20_000)
  t.same(steps(report).map((x) => [x.step, x.status, x.target]), [
    ['dns', 'ok', '127.0.0.1'],
    ['tcp', 'ok', `127.0.0.1:${proxy.port}`],
    ['proxy', 'ok', `127.0.0.1:${proxy.port} -> localhost:${upstream.port}`],
    ['tls', 'ok', `localhost:${upstream.port}`],
    ['health', 'ok', `https://localhost:${upstream.port}/health`]
  ], JSON.stringify(steps(report)))
  t.ok(proxy.seen.some((r) => r.method === 'CONNECT' && r.url === `localhost:${upstream.port}`), 'the proxy saw the CONNECT')
  t.notMatch(JSON.stringify(report), /s3cret-proxy/, 'the proxy password appears nowhere')

  const refused = await startProxy({ refuseConnect: 403 })
  t.teardown(refused.close)
  const bad = await checkServices({
    services: { viaProxy: { baseUrl: `https://localhost:${upstream.port}`, proxy: refused.url, tls: { ca: certs.ca } } }
  }, { timeout: 3000 })
  const step = bad.services[0].steps.find((s) => s.step === 'proxy')
  t.equal(step?.status, 'fail')
  t.equal(step?.result, `proxy answered 403 to CONNECT localhost:${upstream.port}`)
})

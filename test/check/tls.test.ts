import t from 'tap'
import { checkServices } from '../../lib/check/run'
import type { CheckStep } from '../../lib/check/types'
import { within } from '../helpers/wait'
import { checkCerts, httpsServer, silentServer } from './helpers'

const ok = (_req: unknown, res: import('node:http').ServerResponse): void => { res.end('ok') }

function step (steps: CheckStep[], name: string): CheckStep {
  const found = steps.find((s) => s.step === name)
  if (found === undefined) throw new Error(`no ${name} step in ${JSON.stringify(steps)}`)
  return found
}

t.test('a trusted certificate for the right name passes, with its days left; h2 is negotiated when allowed', async (t) => {
  const certs = checkCerts()
  const h2 = await httpsServer(t, certs.good, ok, true)
  const h1 = await httpsServer(t, certs.good, ok, false)
  const report = await within('the check', checkServices({
    services: {
      // 127.0.0.1 named localhost by servername: where localhost also resolves to ::1 (unused here) that would warn.
      h2: { baseUrl: `https://127.0.0.1:${h2.port}`, tls: { ca: certs.ca, servername: 'localhost' }, allowH2: true },
      h1: { baseUrl: `https://127.0.0.1:${h1.port}`, tls: { ca: certs.ca }, allowH2: true }
    }
  }, { timeout: 5000 }), 30_000)
  const [a, b] = report.services
  const tls = step(a.steps, 'tls')
  t.equal(tls.status, 'ok', tls.result)
  t.match(tls.result, /^TLSv1\.[23], certificate for localhost, 127\.0\.0\.1, expires in (89|90) days \(\d{4}-\d\d-\d\d\)$/)
  t.ok(tls.daysLeft === 89 || tls.daysLeft === 90, 'daysLeft')
  t.equal(tls.alpn, 'h2')
  t.equal(step(a.steps, 'h2').status, 'ok')
  t.equal(step(a.steps, 'h2').result, 'h2 negotiated (ALPN)')
  t.equal(a.status, 'ok')
  const h2b = step(b.steps, 'h2')
  t.equal(h2b.status, 'warn', 'a server without h2 is a warning')
  t.equal(h2b.result, 'allowH2 is set but the server chose http/1.1: calls use HTTP/1.1')
  t.equal(b.status, 'warn')
  t.equal(report.status, 'warn', 'warnings only: not a failure')
})

t.test('an expired certificate fails with how long ago it expired', async (t) => {
  const certs = checkCerts()
  const server = await httpsServer(t, certs.expired, ok)
  const report = await within('the check', checkServices({
    services: { old: { baseUrl: `https://localhost:${server.port}`, tls: { ca: certs.ca }, healthPath: '/health' } }
  }, { timeout: 5000 }), 30_000)
  const tls = step(report.services[0].steps, 'tls')
  t.equal(tls.status, 'fail')
  t.match(tls.result, /^certificate expired 3 days ago \(\d{4}-\d\d-\d\d\)$/)
  t.equal(tls.code, 'CERT_HAS_EXPIRED')
  t.equal(tls.daysLeft, -3, 'daysLeft: minus the whole days since, as the message says')
  t.equal(step(report.services[0].steps, 'health').status, 'skip', 'no health GET to an upstream whose TLS fails')
  t.equal(report.status, 'fail')
})

t.test('a certificate for another name fails naming the names it holds', async (t) => {
  const certs = checkCerts()
  const server = await httpsServer(t, certs.wrongName, ok)
  const report = await within('the check', checkServices({
    services: { named: { baseUrl: `https://localhost:${server.port}`, tls: { ca: certs.ca } } }
  }, { timeout: 5000 }), 30_000)
  const tls = step(report.services[0].steps, 'tls')
  t.equal(tls.status, 'fail')
  t.equal(tls.result, 'name mismatch: certificate is for other.test, not localhost')
  t.equal(tls.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
})

t.test('tls.servername is the name checked: the same certificate passes for other.test', async (t) => {
  const certs = checkCerts()
  const server = await httpsServer(t, certs.wrongName, ok)
  const report = await checkServices({
    services: { named: { baseUrl: `https://127.0.0.1:${server.port}`, tls: { ca: certs.ca, servername: 'other.test' } } }
  }, { timeout: 5000 })
  t.equal(step(report.services[0].steps, 'tls').status, 'ok')
})

t.test('an untrusted chain fails; a certificate near expiry warns; rejectUnauthorized: false turns a failure into a warning', async (t) => {
  const certs = checkCerts()
  const good = await httpsServer(t, certs.good, ok)
  const soon = await httpsServer(t, certs.soon, ok)
  const report = await checkServices({
    services: {
      untrusted: { baseUrl: `https://localhost:${good.port}` },
      lax: { baseUrl: `https://localhost:${good.port}`, tls: { rejectUnauthorized: false } },
      soon: { baseUrl: `https://localhost:${soon.port}`, tls: { ca: certs.ca } }
    }
  }, { timeout: 5000 })
  const [untrusted, lax, near] = report.services.map((s) => step(s.steps, 'tls'))
  t.equal(untrusted.status, 'fail')
  t.match(untrusted.result, /^certificate not trusted: [A-Z_]+ \(no tls\.ca: the system CAs were used\)$/)
  t.equal(lax.status, 'warn')
  t.match(lax.result, /; accepted \(tls\.rejectUnauthorized: false\)$/)
  t.equal(near.status, 'warn')
  t.match(near.result, /expires in 5 days \(\d{4}-\d\d-\d\d\)$/)
  t.equal(near.code, 'CERT_EXPIRES_SOON')
})

t.test('a server that accepts TCP but never completes TLS fails at the bound', async (t) => {
  const port = await silentServer(t)
  const report = await within('the check', checkServices({
    services: { mute: { baseUrl: `https://127.0.0.1:${port}`, healthPath: '/' } }
  }, { timeout: 300 }), 20_000)
  const steps = report.services[0].steps
  t.equal(step(steps, 'tcp').status, 'ok', 'TCP connects')
  const tls = step(steps, 'tls')
  t.equal(tls.status, 'fail')
  t.equal(tls.result, 'TLS handshake with 127.0.0.1:' + port + ' timed out after 300 ms')
  t.equal(tls.code, 'ETIMEDOUT')
  t.ok(tls.ms >= 250, `the step took its bound (${tls.ms} ms)`)
})

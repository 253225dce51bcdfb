import t from 'tap'
import { main } from '../../lib/check/cli'
import { formatTable } from '../../lib/check/table'
import type { CheckReport } from '../../lib/check/types'
import { configFile, httpServer } from './helpers'

t.test('the table: a header, one aligned row per step, times right-aligned, a summary line', async (t) => {
  const report: CheckReport = {
    status: 'fail',
    timeout: 3000,
    services: [
      {
        service: 'billing',
        status: 'warn',
        steps: [
          { step: 'dns', target: 'billing.internal', status: 'ok', result: '10.0.0.7', ms: 2, addresses: ['10.0.0.7'] },
          { step: 'tls', target: 'billing.internal:8443', status: 'warn', result: 'TLSv1.3, certificate for billing.internal, expires in 5 days (2026-12-10)', ms: 31 }
        ]
      },
      {
        service: 'ledger',
        status: 'fail',
        steps: [
          { step: 'tcp', target: '10.0.0.9:8443', status: 'fail', result: 'ECONNREFUSED 10.0.0.9:8443', ms: 1204 },
          { step: 'health', target: 'https://ledger:8443/h', status: 'skip', result: 'not probed: the upstream could not be reached', ms: 0 }
        ]
      }
    ]
  }
  t.equal(formatTable(report), [
    'SERVICE  STEP    STATUS  TARGET                 RESULT                                                                        TIME',
    'billing  dns     ok      billing.internal       10.0.0.7                                                                      2 ms',
    'billing  tls     WARN    billing.internal:8443  TLSv1.3, certificate for billing.internal, expires in 5 days (2026-12-10)    31 ms',
    'ledger   tcp     FAIL    10.0.0.9:8443          ECONNREFUSED 10.0.0.9:8443                                                 1204 ms',
    'ledger   health  skip    https://ledger:8443/h  not probed: the upstream could not be reached                                 0 ms',
    '',
    '2 services: 0 ok, 1 with warnings, 1 failed',
    ''
  ].join('\n'))
  t.equal(formatTable({ status: 'ok', timeout: 1, services: [] }).split('\n').at(-2), '0 services: 0 ok, 0 with warnings, 0 failed')
})

t.test('main() in process: --json to stdout and exit 0 when healthy, usage errors to stderr with exit 1', async (t) => {
  const api = await httpServer(t, (_req, res) => { res.end('ok') })
  const file = configFile(t, { services: { api: { baseUrl: api.url, healthPath: '/h' } } })
  const out: string[] = []
  const err: string[] = []
  const io = { stdout: (s: string) => { out.push(s) }, stderr: (s: string) => { err.push(s) } }
  t.equal(await main(['check', file, '--json', '--timeout', '2000'], io), 0)
  const report = JSON.parse(out.join('')) as CheckReport
  t.match(report, { status: 'ok', timeout: 2000, services: [{ service: 'api', status: 'ok' }] })
  t.same(err, [])
  out.length = 0
  t.equal(await main(['-h'], io), 0)
  t.match(out.join(''), /^Usage: /)
  for (const args of [['check', file, 'extra'], ['check', file, '--timeout', '0'], ['check', file, '--timeout'], []]) {
    err.length = 0
    t.equal(await main(args, io), 1, args.join(' '))
    t.match(err.join(''), /\n\nUsage: fastify-http-services check /)
  }
  err.length = 0
  const invalid = configFile(t, { services: { api: { baseUrl: api.url, healthPath: 'h' } } })
  t.equal(await main(['check', invalid], io), 1)
  t.equal(err.join(''), 'services.api.healthPath: expected a path starting with "/" (not "//"), without query or fragment, got "h"\n')
})

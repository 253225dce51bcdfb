import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CheckReport } from '../../lib/check/types'
import { closedPort } from '../helpers/server'
import { checkCerts, configFile, httpServer, httpsServer, runCli, silentServer, tempDir } from './helpers'

// Each run starts a child process through tsx: slow on a loaded machine, so the bound per run is generous.
t.setTimeout(240_000)

t.test('a config with failing services: exit 2, a table with a cause per failure, and the same in --json', async (t) => {
  const certs = checkCerts()
  const ok = await httpServer(t, (_req, res) => { res.end('ok') })
  const down = await httpServer(t, (_req, res) => { res.statusCode = 503; res.end() })
  const secure = await httpsServer(t, certs.good, (_req, res) => { res.end('ok') }, true)
  const expired = await httpsServer(t, certs.expired, (_req, res) => { res.end('ok') })
  const wrong = await httpsServer(t, certs.wrongName, (_req, res) => { res.end('ok') })
  const refused = await closedPort()
  const mute = await silentServer(t)
  const dir = tempDir(t)
  writeFileSync(join(dir, 'ca.pem'), certs.ca)
  const tls = { ca: join(dir, 'ca.pem') }
  const file = configFile(t, {
    services: {
      plain: { baseUrl: ok.url, healthPath: '/health' },
      // 127.0.0.1, not localhost: where localhost also resolves to ::1 (unused here) that address would be a warning.
      secure: { baseUrl: `https://127.0.0.1:${secure.port}`, tls: { ...tls, servername: 'localhost' }, allowH2: true, healthPath: '/health' },
      refused: { baseUrl: `http://127.0.0.1:${refused}` },
      expired: { baseUrl: `https://localhost:${expired.port}`, tls },
      wrongName: { baseUrl: `https://localhost:${wrong.port}`, tls },
      down: { baseUrl: down.url, healthPath: '/health' },
      mute: { baseUrl: `https://127.0.0.1:${mute}` }
    }
  })

  const table = await runCli(['check', file, '--timeout', '2500'])
  t.equal(table.code, 2, 'exit 2: some service failed', { stderr: table.stderr })
  const lines = table.stdout.split('\n')
  t.match(lines[0], /^SERVICE\s+STEP\s+STATUS\s+TARGET\s+RESULT\s+TIME$/)
  const row = (service: string, step: string): string => lines.find((l) => new RegExp(`^${service}\\s+${step}\\s`).test(l)) ?? `(no ${service} ${step} row)`
  t.match(row('plain', 'health'), /\sok\s+http:\/\/127\.0\.0\.1:\d+\/health\s+GET answered 200\s+\d+ ms$/)
  t.match(row('secure', 'tls'), /\sok\s+.*certificate for localhost, 127\.0\.0\.1, expires in \d+ days/)
  t.match(row('secure', 'h2'), /\sok\s+.*h2 negotiated \(ALPN\)/)
  t.match(row('refused', 'tcp'), new RegExp(`\\sFAIL\\s+127\\.0\\.0\\.1:${refused}\\s+ECONNREFUSED 127\\.0\\.0\\.1:${refused}\\s`))
  t.match(row('expired', 'tls'), /\sFAIL\s+.*certificate expired 3 days ago/)
  t.match(row('wrongName', 'tls'), /\sFAIL\s+.*name mismatch: certificate is for other\.test, not localhost/)
  t.match(row('down', 'health'), /\sFAIL\s+.*GET answered 503 \(500 or above\)/)
  t.match(row('mute', 'tls'), new RegExp(`\\sFAIL\\s+.*TLS handshake with 127\\.0\\.0\\.1:${mute} timed out after 2500 ms`))
  t.equal(lines.at(-2), '7 services: 2 ok, 0 with warnings, 5 failed')

  const json = await runCli(['check', file, '--json', '--timeout', '2500'])
  t.equal(json.code, 2)
  const report = JSON.parse(json.stdout) as CheckReport
  t.equal(report.status, 'fail')
  t.equal(report.timeout, 2500)
  t.same(report.services.map((s) => [s.service, s.status]), [
    ['plain', 'ok'], ['secure', 'ok'], ['refused', 'fail'], ['expired', 'fail'], ['wrongName', 'fail'], ['down', 'fail'], ['mute', 'fail']
  ])
  for (const service of report.services) {
    for (const step of service.steps) {
      t.same(Object.keys(step).slice(0, 5), ['step', 'target', 'status', 'result', 'ms'], `${service.service} ${step.step}: the documented fields first`)
      t.ok(Number.isInteger(step.ms) && step.ms >= 0)
    }
  }
  t.match(report.services[3].steps.find((s) => s.step === 'tls'), { code: 'CERT_HAS_EXPIRED', daysLeft: Number })
  t.match(report.services[5].steps.find((s) => s.step === 'health'), { httpStatus: 503 })
})

t.test('a healthy YAML config with ${VAR}s: exit 0; a missing variable: exit 1 with the plugin\'s message', async (t) => {
  const api = await httpServer(t, (_req, res) => { res.end('ok') })
  const file = configFile(t, [
    'services:',
    '  api:',
    '    baseUrl: http://127.0.0.1:${API_PORT}',
    '    healthPath: /health',
    '    headers:',
    '      x-api-key: ${API_KEY}',
    ''
  ].join('\n'), 'services.yaml')
  const healthy = await runCli(['check', file], { API_PORT: String(api.port), API_KEY: 'k3y-value' })
  t.equal(healthy.code, 0, 'exit 0', { stderr: healthy.stderr })
  t.match(healthy.stdout, /^api\s+health\s+ok\s/m)
  t.match(healthy.stdout, /1 service: 1 ok, 0 with warnings, 0 failed/)
  t.equal(api.requests[0]?.headers['x-api-key'], 'k3y-value', 'the health GET went through the configured client')
  t.notMatch(healthy.stdout + healthy.stderr, /k3y-value/)

  const missing = await runCli(['check', file], { API_PORT: String(api.port), API_KEY: undefined })
  t.equal(missing.code, 1, 'exit 1')
  t.equal(missing.stderr, 'configFile services.api.headers.x-api-key: environment variable API_KEY is not set\n')
  t.equal(missing.stdout, '')
})

t.test('usage: --help, unknown flags, a missing file argument, a bad --timeout', async (t) => {
  const help = await runCli(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: fastify-http-services check <services\.yaml\|services\.json> \[--json\] \[--timeout <ms>\]/)
  t.match(help.stdout, /Exit codes: 0 all healthy \(warnings allowed\), 1 invalid usage or config, 2 some service failed/)
  const cases: Array<[string[], RegExp]> = [
    [['check', 'x.yaml', '--bogus'], /^Unknown option '--bogus'/],
    [['check'], /^no config file given\n\nUsage:/],
    [['verify', 'x.yaml'], /^unknown command "verify"\n\nUsage:/],
    [['check', 'x.yaml', '--timeout', '2s'], /^--timeout: expected a positive whole number of milliseconds, got "2s"/]
  ]
  for (const [args, message] of cases) {
    const run = await runCli(args)
    t.equal(run.code, 1, `${args.join(' ')}: exit 1`)
    t.match(run.stderr, message)
    t.match(run.stderr, /Usage: fastify-http-services check/)
  }
  const unreadable = await runCli(['check', join(tempDir(t), 'none.yaml')])
  t.equal(unreadable.code, 1)
  t.match(unreadable.stderr, /^configFile: cannot read .*none\.yaml/)
})

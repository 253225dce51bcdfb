import t from 'tap'
import { createHttpServices } from '../../index'
import { capturePino } from '../helpers/pino-lines'
import { sendJson, startServer } from '../helpers/server'

type LogLine = { level: number, msg?: string, path?: string, url?: string }

// Only the redaction is pinned here, not the wording or the other fields of the lines.
t.test('the retry log lines, "giving up" included, redact query values and never hold the secret', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, { message: 'busy' }))
  const { logger, lines } = capturePino<LogLine>()
  const services = createHttpServices({
    logger,
    services: { api: { baseUrl: server.url, retry: { attempts: 1, baseDelay: 1, budget: false } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const secret = 's3cr3t-t0ken-value'
  const other = 'k3y-in-query-option'

  await t.rejects(api.get(`/search?token=${secret}&page=2`), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 2 })
  await t.rejects(api.get('/search', { query: { api_key: other } }), { code: 'HTTP_SERVICES_ERR_STATUS', status: 503, attempts: 2 })
  t.equal(server.requests.length, 4, 'each call was retried once')

  const givingUp = lines.filter((l) => /giv(e|ing) up/i.test(l.msg ?? ''))
  t.equal(givingUp.length, 2, 'each call logged that it gave up')
  const where = (l: LogLine): string => String(l.path ?? l.url)
  t.same(givingUp.map(where), ['/search?token=***&page=***', '/search?api_key=***'], 'the line names the path with every query value redacted')
  for (const line of lines) {
    const text = JSON.stringify(line)
    t.notOk(text.includes(secret) || text.includes(other), `no secret in "${line.msg ?? ''}"`)
  }
})

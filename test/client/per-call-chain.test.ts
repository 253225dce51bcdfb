import t from 'tap'
import { createHttpServices, type HttpServicesOptions } from '../../index'
import { checkOptionNames } from '../../lib/client'
import { perCallRouting, policyOrder } from '../../lib/pipeline'
import type { HttpService } from '../../lib/service'
import { sendJson, startServer } from '../helpers/server'

/** Whether the service built its per-call chain: it does so on the first call that needs it. */
function builtPerCall (service: HttpService): boolean {
  return (service as unknown as { perCallHandler: unknown }).perCallHandler !== undefined
}

t.test('the call options that need the per-call chain are those of the policies a service\'s chain lacks', async (t) => {
  t.same(perCallRouting([]), { options: ['fallback', 'timeout', 'retry', 'token', 'auth'], deadline: true }, 'a service with no policy')
  t.same(perCallRouting(['fallback', 'deadline', 'retry', 'auth', 'attemptTimeout']), { options: [], deadline: false },
    'a service holding every policy a call can switch on: every call stays on its chain')
  t.same(perCallRouting(['deadline', 'retry']), { options: ['fallback', 'token', 'auth', 'timeout'], deadline: false },
    '`timeout` still needs the attempt timeout, which the chain lacks')
  for (const [name, factory] of policyOrder) {
    for (const option of factory?.callOptions ?? []) {
      t.doesNotThrow(() => checkOptionNames('api', { [option]: undefined }), `${name} declares ${option}, a known call option`)
    }
  }
})

t.test('a call option switches a policy on through the per-call chain; on a service that has it, the call stays on its own', async (t) => {
  let answers = 0
  const server = await startServer((_req, res) => sendJson(res, ++answers % 2 === 1 ? 503 : 200, { answers }))
  const options: HttpServicesOptions = {
    defaults: { retry: false },
    services: { plain: { baseUrl: server.url }, quiet: { baseUrl: server.url }, retrying: { baseUrl: server.url, retry: { attempts: 2, baseDelay: 1 } } }
  }
  const services = createHttpServices(options)
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })

  await t.resolves(services.client('plain').get('/', { retry: { attempts: 2, baseDelay: 1 } }), 'the 503 is retried')
  t.ok(builtPerCall(services.get('plain')), 'through the per-call chain of a service without retries')
  t.equal(services.stats().plain.attempts, 2)

  const res = await services.client('retrying').get('/', { retry: false, throwHttpErrors: false })
  t.equal(res.status, 503, "the call's own `retry: false` wins")
  t.equal((await services.client('retrying').get('/', { retry: { attempts: 3, baseDelay: 1 } })).status, 200)
  t.notOk(builtPerCall(services.get('retrying')), 'a service whose chain holds the retry policy never builds the per-call one')

  await services.client('quiet').get('/', { query: { a: 1 }, headers: { 'x-a': '1' }, throwHttpErrors: false, decompress: false })
  t.notOk(builtPerCall(services.get('quiet')), 'options no policy declares keep a call on the service\'s chain')
})

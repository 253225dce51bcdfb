import Fastify from 'fastify'
import t from 'tap'
import httpServices, { createHttpServices, HttpStatusError, TimeoutError, type Logger } from '../../index'
import { sendJson, startServer } from '../helpers/server'

t.test('the total timeout covers every attempt and backoff sleep', async (t) => {
  const timers = new Set<NodeJS.Timeout>()
  // Each answer takes 100 ms: the total timeout of 500 ms ends the call during one of the attempts.
  const server = await startServer((_req, res) => {
    const timer = setTimeout(() => { timers.delete(timer); sendJson(res, 503, {}) }, 100)
    timers.add(timer)
  })
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, timeout: 500, retry: { attempts: 10, delay: () => 0 } } }
  })
  await services.open()
  t.teardown(async () => {
    for (const timer of timers) clearTimeout(timer)
    await services.close()
    await server.close()
  })
  const err = await services.client('api').get('/slow').catch((e: unknown) => e) as TimeoutError | HttpStatusError
  if (err instanceof TimeoutError) {
    t.equal(err.phase, 'total')
    t.equal(err.timeout, 500)
  } else {
    // On a loaded machine the deadline's timer may not have fired yet when an attempt fails past it: retry then
    // refuses the wait ("would pass the deadline") and the call ends with the upstream's last answer.
    t.ok(err instanceof HttpStatusError, 'else the last failure, returned because no wait fits before the deadline')
    t.equal((err as HttpStatusError).status, 503)
  }
  const attempts = err.attempts ?? 0
  t.ok(attempts >= 1 && attempts <= 5, `ended on attempt ${attempts} of 11`)
  t.equal(services.stats().api.attempts, attempts)
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.ok(server.requests.length <= attempts, 'no attempt after the total timeout')
})

t.test('a backoff that would outlast the total timeout is not slept: the last failure is returned at once', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  const whys: unknown[] = []
  const logger: Logger = { debug () {}, info () {}, warn (obj) { whys.push((obj as { why?: unknown }).why) }, error () {}, child: () => logger }
  const services = createHttpServices({
    logger,
    services: { api: { baseUrl: server.url, timeout: 1000, retry: { attempts: 10, delay: () => 600 } } }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const err = await services.client('api').get('/x').catch((e: unknown) => e) as HttpStatusError
  t.equal(err.code, 'HTTP_SERVICES_ERR_STATUS', 'the 503 itself, not a timeout')
  t.ok(err.attempts !== undefined && err.attempts <= 2, `${err.attempts} attempts: a third would start after the 1 s budget`)
  t.equal(server.requests.length, err.attempts)
  t.equal(whys.at(-1), 'a wait of 600 ms would pass the deadline')
})

t.test('calls made while handling a request never outlive its requestDeadline', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, { error: 'busy' }))
  const app = Fastify()
  await app.register(httpServices, {
    requestDeadline: 1000,
    deadlineHeader: 'x-request-timeout-ms',
    services: { api: { baseUrl: server.url, retry: { attempts: 10, delay: () => 600 } } }
  })
  app.get('/', async (request) => (await request.httpClient('api').get('/x')).json())
  t.teardown(async () => { await app.close(); await server.close() })

  const reply = await app.inject('/')
  t.equal(reply.statusCode, 502, 'the status error reached the error handler')
  const hits = server.requests.splice(0).length
  t.ok(hits >= 1 && hits <= 2, `${hits} attempts fit in 1 s at 600 ms apart, not 11`)

  const short = await app.inject({ url: '/', headers: { 'x-request-timeout-ms': '300' } })
  t.ok(short.statusCode === 502 || short.statusCode === 504, 'a status error, or a timeout if the one attempt was slower')
  t.ok(server.requests.length <= 1, 'an inbound budget of 300 ms leaves no room for a retry 600 ms later')
})

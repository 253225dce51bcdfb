import { Readable } from 'node:stream'
import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

// A stream body is gone once sent: a hedge of it would reach the server a second time, empty (issue 18, section 5).

t.test('a hedged PUT with a stream body is sent once, whole, even when its answer is slow enough for a hedge', async (t) => {
  const timers = new Set<NodeJS.Timeout>()
  // Every answer waits well past the hedge delay, so a hedge would fire for any call that may be hedged.
  const server = await startServer((_req, res, seen) => {
    const timer = setTimeout(() => { timers.delete(timer); sendJson(res, 200, { body: seen.body }) }, 500)
    timers.add(timer)
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, hedge: { delay: 20 } } } })
  await services.open()
  t.teardown(async () => {
    for (const timer of timers) clearTimeout(timer)
    await services.close()
    await server.close()
  })
  const api = services.client('api')

  // The same call with a replayable body is hedged: the set-up does make a hedge fire.
  const buffered = await api.put('/doc', { body: Buffer.from('replayable body') })
  t.equal(buffered.attempts, 2, 'a Buffer body is hedged')
  await buffered.dump()
  t.same(server.requests.map((r) => [r.method, r.body]), [['PUT', 'replayable body'], ['PUT', 'replayable body']])
  t.match(services.stats().api.retry, { hedges: 1 })

  server.requests.length = 0
  const stream = Readable.from([Buffer.from('first part, '), Buffer.from('second part')])
  const res = await api.put('/doc', { body: stream })
  t.same(await res.json(), { body: 'first part, second part' }, 'the answer is to the whole body')
  t.equal(res.attempts, 1)
  t.same(server.requests.map((r) => [r.method, r.url, r.body]), [['PUT', '/doc', 'first part, second part']],
    'the server received exactly one request, with the full body')
  t.match(services.stats().api.retry, { hedges: 1 }, 'no hedge was fired for the stream body')
})

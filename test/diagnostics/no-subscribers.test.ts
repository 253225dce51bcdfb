import diagnosticsChannel from 'node:diagnostics_channel'
import t from 'tap'
import { createHttpServices, type HttpResponse } from '../../index'
import { callChannel } from '../../lib/diagnostics/channels'
import { attemptObserved } from '../../lib/diagnostics/publish'
import { sendJson, startServer } from '../helpers/server'

/** The call a response answers (set by the transport): its `diagnostics` is the message made for it, if any. */
const diagnosticsOf = (res: HttpResponse): unknown => (res.call as { diagnostics?: unknown }).diagnostics

t.test('while nobody subscribes to the call and attempt channels, a call builds no message', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const services = createHttpServices({ services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')

  t.notOk(callChannel.hasSubscribers, 'an open registry does not subscribe to the call channel (its log lines do not need it)')
  t.notOk(attemptObserved(), 'nor to the attempt channels')
  const res = await api.get('/x')
  await res.dump()
  t.equal(diagnosticsOf(res), undefined, 'no call message')

  // One subscriber on one channel: the call is published, and its message made.
  const onEnd = (): void => {}
  diagnosticsChannel.subscribe('tracing:fastify-http-services:call:asyncEnd', onEnd)
  const published = await api.get('/x')
  await published.dump()
  diagnosticsChannel.unsubscribe('tracing:fastify-http-services:call:asyncEnd', onEnd)
  t.ok(diagnosticsOf(published) !== undefined, 'with a subscriber, the message is made')

  const onError = (): void => {}
  diagnosticsChannel.subscribe('fastify-http-services:attempt:error', onError)
  t.ok(attemptObserved(), 'a subscriber to any attempt channel makes the transport publish')
  const attempted = await api.get('/x')
  await attempted.dump()
  diagnosticsChannel.unsubscribe('fastify-http-services:attempt:error', onError)
  t.ok(diagnosticsOf(attempted) !== undefined, 'an attempt message refers to its call\'s: made on first need')

  const after = await api.get('/x')
  await after.dump()
  t.equal(diagnosticsOf(after), undefined, 'unsubscribed: nothing is made again')
})

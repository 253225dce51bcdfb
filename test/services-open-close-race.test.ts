import diagnosticsChannel from 'node:diagnostics_channel'
import t from 'tap'
import { createHttpServices } from '../index'
import { closedPort } from './helpers/server'

// A registry closed while its open() waits for Redis (an app stopped during start-up, Redis away) must not open the
// shared breakers' subscriber afterwards: nothing would close it, and it would reconnect forever.
t.test('close() while open() waits for Redis: the shared breakers are not opened after it', async (t) => {
  const port = await closedPort()
  const services = createHttpServices({
    redis: { url: `redis://127.0.0.1:${port}`, timeout: 50 },
    services: { api: { baseUrl: 'http://127.0.0.1:1', breaker: { shared: true } } }
  })
  const breakerState = diagnosticsChannel.channel('fastify-http-services:breaker:state')
  t.notOk(breakerState.hasSubscribers, 'nobody listens to breaker changes before open')
  const opening = services.open()
  const closing = services.close()
  await Promise.all([opening, closing])
  t.notOk(breakerState.hasSubscribers, 'nor after the close that overtook the open')
  t.equal(services.stats().api.redis?.breaker, 'unsubscribed')
})

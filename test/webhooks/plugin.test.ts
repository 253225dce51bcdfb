import t from 'tap'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import httpServices, { webhookReceiver } from '../../index'
import { waitUntil } from '../helpers/wait'

const secret = 'whsec_' + Buffer.from('one secret for both apps, 32 b!').toString('base64')

interface Line { level: number, msg?: string, [key: string]: unknown }

t.test('a route sends through fastify.httpServices.webhooks; attempts are logged without secrets; app.close stops the queue', async (t) => {
  // The receiving app: 503 to its first request, then the real receiver.
  const receiving = Fastify()
  let first = true
  const events: unknown[] = []
  receiving.addHook('onRequest', async (_request, reply) => {
    if (first) {
      first = false
      return await reply.code(503).send()
    }
  })
  await receiving.register(webhookReceiver, { path: '/in', secret, handler: (event) => { events.push(event) } })
  await receiving.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await receiving.close() })

  const lines: Line[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as Line) } } } })
  await app.register(httpServices, {
    services: {
      partner: {
        baseUrl: `http://127.0.0.1:${(receiving.server.address() as AddressInfo).port}`,
        webhook: { secret, path: '/in', schedule: [0, 1] }
      }
    }
  })
  app.post('/pay', async () => await app.httpServices.webhooks.send('partner', { type: 'invoice.paid', data: { id: 'inv_9' } }))
  t.teardown(async () => { await app.close() })
  const res = await app.inject({ method: 'POST', url: '/pay' })
  t.equal(res.statusCode, 200)
  const { id } = res.json() as { id: string }
  await waitUntil('the event is delivered', () => events.length === 1)
  t.match(events, [{ type: 'invoice.paid', data: { id: 'inv_9' } }])

  await waitUntil('the delivery is logged', () => lines.some((l) => l.msg === 'webhook delivered'))
  const failed = lines.find((l) => l.msg === 'webhook attempt failed')
  t.match(failed, { level: 40, service: 'partner', webhookId: id, type: 'invoice.paid', attempt: 1, status: 503, nextAttemptIn: 1 })
  t.match(lines.find((l) => l.msg === 'webhook delivered'), { level: 30, webhookId: id, attempts: 2, status: 200 })
  const text = JSON.stringify(lines)
  t.notOk(text.includes(secret.slice(6)), 'no secret in the logs')
  t.notOk(text.includes('v1,'), 'no signature in the logs')
  t.match(app.httpServices.stats().partner.webhooks, { delivered: 1, attempts: 2 })

  await app.close()
  await t.rejects(app.httpServices.webhooks.send('partner', { type: 'late' }), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' })
})

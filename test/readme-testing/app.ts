// app.ts
import Fastify from 'fastify'
import httpServices, { HttpStatusError, type Dispatcher } from '../../index'

export function buildApp (dispatcher?: Dispatcher) {
  const app = Fastify()
  app.register(httpServices, {
    dispatcher, // undefined in production: each service uses its own pool
    services: {
      users: { baseUrl: 'http://users.internal', retry: { attempts: 2, baseDelay: 10 }, breaker: { minimumRequests: 4 } },
      billing: { baseUrl: 'http://billing.internal/api' }
    }
  })
  app.get('/me/invoices', async (request, reply) => {
    const user = await request.httpClient('users').getJson<{ id: number }>('/me')
    try {
      return await request.httpClient('billing').getJson('/invoices', { query: { user: user.id } })
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) return reply.code(404).send({ error: 'no invoices yet' })
      throw err // anything else: Fastify answers 502 (HttpStatusError.statusCode)
    }
  })
  return app
}

import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import httpServices, { HttpStatusError, type HttpServicesOptions } from '../index'

export interface GatewayOptions {
  catalogUrl: string
  inventoryUrl: string
  logger?: FastifyServerOptions['logger']
  /** Extra plugin options (the tests pass a mock dispatcher here). */
  plugin?: Partial<HttpServicesOptions>
}

interface Product { id: string, name: string, price: number }
interface Stock { sku: string, available: number | null, stale?: boolean }

/**
 * A small API gateway over two downstreams: `catalog` (healthy) and `inventory` (flaky: 503s, slow answers,
 * outages). It shows retries, a breaker that opens and falls back, streaming, and error mapping.
 */
export async function buildGateway (o: GatewayOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: o.logger ?? false })
  await app.register(httpServices, {
    defaults: { timeout: { connect: 1000, headers: 2000, body: 5000, total: 8000 } },
    services: {
      // Retries and a circuit breaker are on by default: catalog gets both with the production defaults.
      catalog: { baseUrl: o.catalogUrl, connections: 16 },
      inventory: {
        baseUrl: o.inventoryUrl,
        connections: 8,
        critical: true,
        retry: { attempts: 3, baseDelay: 50, maxDelay: 1000, maxRetryAfter: 2000 },
        // Tighter than the default breaker (50 % of 20 calls in 10 s, open 30 s) so the demo shows it quickly.
        breaker: { errorPercentage: 50, minimumRequests: 5, window: 10_000, resetAfter: 5000 },
        fallback: () => ({ available: null, stale: true })
      }
    },
    underPressure: { exposeStatusRoute: '/status' },
    // The live services page at /_services (JSON at /_services.json). Guard it in production: see the README.
    statusPage: true,
    ...o.plugin
  })

  // Aggregate JSON from both services; inventory failures fall back to `available: null`.
  app.get<{ Params: { id: string } }>('/products/:id', async (request) => {
    const [product, stock] = await Promise.all([
      request.httpClient('catalog').getJson<Product>('/products/:id', { params: { id: request.params.id } }),
      request.httpClient('inventory').getJson<Stock>('/stock/:sku', { params: { sku: request.params.id } })
    ])
    return { ...product, stock }
  })

  // A downstream error mapped to a clean reply: 404 stays 404 with the upstream's detail, the rest is a 502.
  app.get<{ Params: { sku: string } }>('/stock/:sku', async (request, reply) => {
    try {
      return await request.httpClient('inventory').getJson<Stock>('/stock/:sku', { params: { sku: request.params.sku }, fallback: undefined })
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) {
        return await reply.code(404).send({ error: 'not found', detail: err.detail })
      }
      throw err
    }
  })

  // A large body streamed through without buffering it.
  app.get<{ Querystring: { rows?: string } }>('/export.csv', async (request, reply) => {
    const res = await request.httpClient('catalog').stream('GET', '/export.csv', { query: { rows: request.query.rows ?? '100000' } })
    return await reply.type('text/csv').send(res.body)
  })

  return app
}

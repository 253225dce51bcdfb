/**
 * End-to-end benchmark server (its own process): a Fastify app with the same route twice, once calling the
 * downstream through `request.httpClient` and once through a raw undici Pool. argv[2] is the downstream origin.
 */
import Fastify from 'fastify'
import { Pool } from 'undici'
import type { AddressInfo } from 'node:net'
import httpServices from './lib'

async function main (): Promise<void> {
  const origin = process.argv[2]
  const app = Fastify({ logger: false })
  await app.register(httpServices, { services: { up: { baseUrl: origin, connections: 64 } } })
  const pool = new Pool(origin, { connections: 64 })
  app.get('/lib', async (request) => await request.httpClient('up').getJson('/'))
  app.get('/raw', async () => {
    const { body } = await pool.request({ path: '/', method: 'GET' })
    return await body.json()
  })
  app.addHook('onClose', async () => { await pool.close() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.send?.({ port: (app.server.address() as AddressInfo).port })
  process.on('disconnect', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
main().catch((err) => { console.error(err); process.exit(1) })

import { AsyncLocalStorage } from 'node:async_hooks'
import diagnosticsChannel from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

/*
 * undici calls a dispatch handler back in the async context of the connection, which is the context of the call that
 * opened it. The pipeline reports attempts' outcomes through callbacks, not promise stages, so it must put each call
 * back in its own context before anything runs on an outcome: a retry's decision, its log line (pino's OpenTelemetry
 * instrumentation reads the active span there), the next attempt's diagnostics message (its span's parent).
 * One connection, so every call after the first reuses the connection the first one opened.
 */

/** The AsyncLocalStorage store each message of `channel` is published in, recorded until the test ends. */
function storesOn (t: Test, als: AsyncLocalStorage<string>, channel: string): Array<string | undefined> {
  const seen: Array<string | undefined> = []
  const onMessage = (): void => { seen.push(als.getStore()) }
  diagnosticsChannel.subscribe(channel, onMessage)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channel, onMessage) })
  return seen
}

for (const [name, call] of [
  ['getJson (the buffered attempt)', async (client: ReturnType<ReturnType<typeof createHttpServices>['client']>) => await client.getJson('/')],
  ['get() (undici request())', async (client: ReturnType<ReturnType<typeof createHttpServices>['client']>) => { await (await client.get('/')).dump() }]
] as const) {
  t.test(`${name}: what runs on an attempt's outcome sees the caller's AsyncLocalStorage store, on a connection another call opened`, async (t) => {
    const als = new AsyncLocalStorage<string>()
    let hits = 0
    // Every odd request answers 503: each call's first attempt fails and is retried once.
    const server = await startServer((_req, res) => { sendJson(res, ++hits % 2 === 1 ? 503 : 200, {}) })
    const inDelay: Array<string | undefined> = []
    const inScheduled = storesOn(t, als, 'fastify-http-services:retry:scheduled')
    const inAttemptStart = storesOn(t, als, 'fastify-http-services:attempt:start')
    const services = createHttpServices({
      services: {
        up: { baseUrl: server.url, connections: 1, breaker: false, retry: { attempts: 1, delay: () => { inDelay.push(als.getStore()); return 1 } } }
      }
    })
    await services.open()
    t.teardown(async () => {
      await services.close()
      await server.close()
    })

    const names = ['first', 'second', 'third']
    for (const store of names) await als.run(store, async () => { await call(services.client('up')) })

    t.equal(server.requests.length, 6, 'each call took two attempts')
    t.same(inDelay, names, "the retry's delay ran in each call's own context")
    t.same(inScheduled, names, "the retry:scheduled message was published in each call's own context")
    t.same(inAttemptStart, ['first', 'first', 'second', 'second', 'third', 'third'], "each attempt, the retried one too, started in its call's context")
  })
}

t.test('a call that waited for a bulkhead slot goes on in its own context, not in that of the call that freed the slot', async (t) => {
  const als = new AsyncLocalStorage<string>()
  const server = await startServer((_req, res) => { setTimeout(() => { sendJson(res, 200, {}) }, 20) })
  const inAttemptStart = storesOn(t, als, 'fastify-http-services:attempt:start')
  const inAdmitted = storesOn(t, als, 'fastify-http-services:bulkhead:admitted')
  const services = createHttpServices({ services: { up: { baseUrl: server.url, breaker: false, bulkhead: { maxConcurrent: 1, maxQueue: 5 } } } })
  await services.open()
  t.teardown(async () => {
    await services.close()
    await server.close()
  })

  const names = ['first', 'second', 'third']
  await Promise.all(names.map(async (store) => { await als.run(store, async () => await services.client('up').getJson('/')) }))

  t.same(inAttemptStart, names, "each call's attempt started in its own context, the two that waited too")
  t.same(inAdmitted, ['second', 'third'], "bulkhead:admitted was published in the admitted call's context")
})

t.test('a bearer function runs in its call\'s own context on every attempt, the retried one too', async (t) => {
  const als = new AsyncLocalStorage<string>()
  let hits = 0
  // Every odd request answers 503: each call's first attempt fails and is retried once, on the one connection.
  const server = await startServer((_req, res) => { sendJson(res, ++hits % 2 === 1 ? 503 : 200, {}) })
  const services = createHttpServices({
    services: {
      sync: { baseUrl: server.url, connections: 1, breaker: false, retry: { attempts: 1, baseDelay: 1 }, auth: { bearer: () => `tok-${als.getStore() ?? 'none'}` } },
      async: { baseUrl: server.url, connections: 1, breaker: false, retry: { attempts: 1, baseDelay: 1 }, auth: { bearer: async () => `tok-${als.getStore() ?? 'none'}` } }
    }
  })
  await services.open()
  t.teardown(async () => {
    await services.close()
    await server.close()
  })
  const names = ['first', 'second']
  for (const service of ['sync', 'async']) {
    const from = server.requests.length
    for (const store of names) await als.run(store, async () => { await services.client(service).getJson('/') })
    t.same(server.requests.slice(from).map((r) => r.headers.authorization),
      ['Bearer tok-first', 'Bearer tok-first', 'Bearer tok-second', 'Bearer tok-second'], `${service}: each attempt's token came from its call's store`)
  }
})

import diagnosticsChannel from 'node:diagnostics_channel'
import http from 'node:http'
import { Pool, request as undiciRequest, Agent } from 'undici'
import { buildSnapshot, createHttpServices, kChannelNames, StatusAggregator } from './lib'
import { apiNoSdk, undiciInstrumentable, undiciInstrumented, withSdk } from './telemetry'

/** One client under test: `call()` makes one GET of the small JSON body and reads it. */
export interface BenchClient {
  call: () => Promise<unknown>
  close: () => Promise<void>
  /** Runs around this client's own measuring (warm-up included), so that what it sets up there reaches no other row. */
  measuring?: <T>(run: () => Promise<T>) => Promise<T>
}

export type ClientFactory = (origin: string) => Promise<BenchClient>

const connections = 64

/**
 * The floor: undici's `pool.dispatch` with the least handler that can answer the same question (gather the chunks,
 * parse the JSON once), which is what the `*Json` helpers compete with. No promise or stream per call beyond the one
 * the caller awaits.
 */
const floorDispatch: ClientFactory = async (origin) => {
  const pool = new Pool(origin, { connections })
  const options = { path: '/', method: 'GET' as const, headers: {} }
  const call = (): Promise<unknown> => new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    pool.dispatch(options, {
      onRequestStart () {},
      onResponseStart () {},
      onResponseData (_controller, chunk: Buffer) { chunks.push(chunk) },
      onResponseEnd () {
        try {
          resolve(JSON.parse((chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)).toString('utf8')))
        } catch (err) {
          reject(err)
        }
      },
      onResponseError (_controller, err) { reject(err) }
    })
  })
  return { call, close: async () => { await pool.close() } }
}

const rawPool: ClientFactory = async (origin) => {
  const pool = new Pool(origin, { connections })
  return {
    call: async () => {
      const { body } = await pool.request({ path: '/', method: 'GET' })
      return await body.json()
    },
    close: async () => { await pool.close() }
  }
}

function library (extra: Record<string, unknown>, stream = false, path = '/'): ClientFactory {
  return async (origin) => {
    const services = createHttpServices({ services: { up: { baseUrl: origin, connections, ...extra } } })
    await services.open()
    const client = services.client('up')
    return {
      // getJson reads the body in its own dispatch handler; get() hands over undici's body stream, read by json().
      // getJson's promise is returned as it is, as the floor's is: an async wrapper would add a promise and a resumed
      // frame per call to this row alone (about 1 % at concurrency 64).
      call: stream ? async () => await (await client.get(path)).json() : () => client.getJson(path),
      close: async () => { await services.close() }
    }
  }
}

/**
 * `factory`'s client with a no-op subscriber on every diagnostics channel while it is measured (and only then: the
 * other rows run with nothing subscribed): what publishing costs once something listens.
 */
function withNoopSubscribers (factory: ClientFactory): ClientFactory {
  const noop = (): void => {}
  return async (origin) => ({
    ...await factory(origin),
    measuring: async (run) => {
      for (const name of kChannelNames) diagnosticsChannel.subscribe(name, noop)
      try {
        return await run()
      } finally {
        for (const name of kChannelNames) diagnosticsChannel.unsubscribe(name, noop)
      }
    }
  })
}

/**
 * The default client while its status page is open: the page's aggregator subscribed (a watcher, as an SSE client
 * is) while the row is measured, and only then, so its counting and a snapshot a second are in the figures.
 */
const withStatusPage: ClientFactory = async (origin) => {
  const services = createHttpServices({ services: { up: { baseUrl: origin, connections } } })
  await services.open()
  const client = services.client('up')
  return {
    call: () => client.getJson('/'),
    close: async () => { await services.close() },
    measuring: async (run) => {
      // Its own aggregator each time, closed after: a released one would stay subscribed for a minute, into other rows.
      const aggregator = new StatusAggregator(services)
      // What the events route does each second for its clients: one snapshot, serialized.
      aggregator.watch(() => { JSON.stringify(buildSnapshot(services.stats(), aggregator, aggregator.now())) })
      try {
        return await run()
      } finally {
        aggregator.close()
      }
    }
  }
}

/**
 * The default client with OAuth2 client credentials: a token endpoint in this process answers once, so every measured
 * call takes the cached token (issue 19: within 0.97x of the default row).
 */
function withOAuth2 (): ClientFactory {
  return async (origin) => {
    const idp = http.createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ access_token: 'bench-token', token_type: 'Bearer', expires_in: 3600 }))
    })
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve))
    const { port } = idp.address() as { port: number }
    const inner = await library({ auth: { oauth2: { tokenUrl: `http://127.0.0.1:${port}/token`, clientId: 'bench', clientSecret: 'bench' } } })(origin)
    return {
      ...inner,
      close: async () => {
        await inner.close()
        await new Promise((resolve) => idp.close(resolve))
      }
    }
  }
}

/** Every policy on, with limits far above what the benchmark reaches. */
export const allPolicies = {
  retry: { attempts: 3 },
  breaker: { minimumRequests: 1000 },
  bulkhead: { maxConcurrent: 1000, maxQueue: 1000 },
  rateLimit: { rate: 10_000_000, interval: 1000 },
  timeout: { total: 10_000 }
}

const undiciRequestClient: ClientFactory = async (origin) => {
  const dispatcher = new Agent({ connections })
  return {
    call: async () => {
      const { body } = await undiciRequest(origin + '/', { dispatcher })
      return await body.json()
    },
    close: async () => { await dispatcher.close() }
  }
}

const fetchClient: ClientFactory = async (origin) => ({
  call: async () => await (await fetch(origin + '/')).json(),
  close: async () => {}
})

const gotClient: ClientFactory = async (origin) => {
  const { default: got } = await import('got')
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  const instance = got.extend({ prefixUrl: origin, agent: { http: agent }, retry: { limit: 0 } })
  return {
    call: async () => await instance.get('').json(),
    close: async () => { agent.destroy() }
  }
}

const axiosClient: ClientFactory = async (origin) => {
  const { default: axios } = await import('axios')
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  const instance = axios.create({ baseURL: origin, httpAgent: agent })
  return {
    call: async () => (await instance.get('/')).data,
    close: async () => { agent.destroy() }
  }
}

/** The clients in table order; the first is the floor every ratio is taken against. */
export const clients: Array<[name: string, factory: ClientFactory]> = [
  ['undici pool.dispatch + minimal handler (floor)', floorDispatch],
  ['undici Pool.request + body.json()', rawPool],
  ['fastify-http-services, default', library({})],
  ['fastify-http-services, default + no-op subscribers', withNoopSubscribers(library({}))],
  ['fastify-http-services, default + status page open', withStatusPage],
  ['fastify-http-services, default without breaker', library({ breaker: false })],
  // The floor's request on the wire: the default asks for compressed bodies (`accept-encoding`), which the floor does not.
  ['fastify-http-services, default + decompress: false', library({ decompress: false })],
  ['fastify-http-services, default + bearer (fixed)', library({ auth: { bearer: 'bench-token' } })],
  ['fastify-http-services, default + oauth2 (cached token)', withOAuth2()],
  ['fastify-http-services, default + bearer function', library({ auth: { bearer: () => 'bench-token' } })],
  ['fastify-http-services, default + attempt timeout', library({ timeout: { attempt: 10_000 } })],
  ['fastify-http-services, default + fallback', library({ fallback: () => ({ fallback: true }) })],
  ['fastify-http-services, all policies', library(allPolicies)],
  ['fastify-http-services, get() + json()', library({}, true)],
  ['fastify-http-services, default + OpenTelemetry API, no SDK', apiNoSdk],
  ['fastify-http-services, default + SDK with a no-op exporter', withSdk],
  ...(undiciInstrumentable() ? [['undici Pool.request + instrumentation-undici, same SDK', undiciInstrumented] as [string, ClientFactory]] : []),
  // Every call after the first is a hit (the upstream's `/cached` answer is fresh for an hour): the cost of a hit.
  ['fastify-http-services, cache hit (memory)', library({ cache: true }, false, '/cached')],
  ['undici.request', undiciRequestClient],
  ['fetch', fetchClient],
  ['got', gotClient],
  ['axios', axiosClient]
]

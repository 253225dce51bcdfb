import { performance } from 'node:perf_hooks'
import t from 'tap'
import { createHttpServices, TimeoutError, type HttpClient } from '../../index'
import { startRawServer } from '../helpers/raw-server'

// Issue 16.3: undici restarts its headers timer on every 1xx answer, so an upstream sending `103 Early Hints` every
// 100 ms held a call for ever. `timeout.headers` bounds the wait for the final answer's headers.

const json = '{"ok":true}'
const ok = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n${json}`
const hint = 'HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n'

async function setup (t: tap.Test): Promise<HttpClient> {
  const server = await startRawServer((socket, req) => {
    if (req.path === '/hints-then-ok') {
      // A few hints, then the answer, well within the headers timeout.
      socket.write(hint + hint)
      server.after(socket, 100, () => socket.write(hint + ok))
      return 'next'
    }
    socket.write(hint)
    server.every(socket, 100, () => socket.write(hint))
  })
  const services = createHttpServices({
    // A call still pending when the test fails is aborted soon after.
    closeTimeout: 500,
    services: { up: { baseUrl: server.url, retry: false, breaker: false, timeout: { headers: 500 } } }
  })
  await services.open()
  t.teardown(async () => {
    await services.close()
    await server.close()
  })
  return services.client('up')
}

/** How the call ended and after how many milliseconds; a call still pending after `ms` fails the test. */
async function timed (promise: Promise<unknown>, ms = 5000): Promise<{ value?: unknown, error?: unknown, elapsed: number }> {
  const start = performance.now()
  let timer: NodeJS.Timeout | undefined
  const pending = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the call was still pending after ${ms} ms`)), ms)
  })
  try {
    const outcome = await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), pending])
    return { ...outcome, elapsed: performance.now() - start }
  } finally {
    clearTimeout(timer)
  }
}

const calls: Record<string, (api: HttpClient, path: string) => Promise<unknown>> = {
  getJson: async (api, path) => await api.getJson(path),
  get: async (api, path) => await (await api.get(path)).text(),
  'get with a signal': async (api, path) => await (await api.get(path, { signal: new AbortController().signal })).text(),
  stream: async (api, path) => (await api.stream('GET', path)).status
}

const answered: Record<string, unknown> = { getJson: { ok: true }, get: json, 'get with a signal': json, stream: 200 }

for (const [name, call] of Object.entries(calls)) {
  t.test(`${name}: 103 Early Hints every 100 ms do not hold the call past timeout.headers`, async (t) => {
    const api = await setup(t)
    const { error, elapsed } = await timed(call(api, '/hints-forever'))
    t.ok(error instanceof TimeoutError, 'a TimeoutError')
    t.match(error, { phase: 'headers', timeout: 500, code: 'HTTP_SERVICES_ERR_TIMEOUT' })
    // The final headers must come within timeout.headers of the first 1xx: at most twice the limit, plus timer slack.
    t.ok(elapsed < 3000, `failed well before 3 s (${Math.round(elapsed)} ms)`)
  })

  t.test(`${name}: 1xx answers followed by the final answer still work`, async (t) => {
    const api = await setup(t)
    const { value, error } = await timed(call(api, '/hints-then-ok'))
    t.equal(error, undefined, 'no error')
    t.same(value, answered[name], 'the final answer')
  })
}

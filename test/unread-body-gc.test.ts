import { setTimeout as sleep } from 'node:timers/promises'
import { gzipSync } from 'node:zlib'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { createHttpServices } from '../index'
import { capturePino } from './helpers/pino-lines'
import { sendJson, startServer } from './helpers/server'

// The garbage-collection path of the unread-body watchdog (lib/unread-body.ts), in a file of its own: it turns on
// --expose-gc at run time and forces collections, which no other test's process should be subject to.

type LogLine = { level: number, msg: string, reqId?: string, service?: string, method?: string, path?: string, unreadFor?: number }

const kBig = 1024 * 1024
const kChunk = 16 * 1024
/** Generous: the fix frees the connection within timeout.body (300 ms); without it the second call never ends. */
const kBound = 3000

/** `/big` is 1 MB in 16 KiB writes (backpressure respected); anything else is a small JSON body. */
async function setup (t: Test, timeout: { body: number }) {
  const server = await startServer((req, res) => {
    if (req.url === '/small-gzip') {
      const gz = gzipSync(JSON.stringify({ ok: true, zipped: true }))
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(gz.length) })
      res.end(gz)
      return
    }
    if (req.url?.startsWith('/big') !== true) {
      sendJson(res, 200, { ok: true })
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(kBig) })
    let sent = 0
    const pump = (): void => {
      while (sent < kBig) {
        sent += kChunk
        const more = res.write(Buffer.alloc(kChunk, 'a'))
        if (sent >= kBig) break
        if (!more) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const { logger, lines } = capturePino<LogLine>()
  const services = createHttpServices({ logger, closeTimeout: 500, services: { api: { baseUrl: server.url, connections: 1, retry: false, timeout } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const warnings = (): LogLine[] => lines.filter((l) => l.level === 40 && /unread/.test(l.msg))
  return { api: services.client('api'), warnings }
}

/** `promise`, or a rejection naming `what` once `ms` pass: a failing test ends with a message, not tap's timeout. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

t.test('an unread response that is garbage-collected has its body discarded at once', async (t) => {
  // --expose-gc for this file alone (tap's `node-arg` would apply to every file): set here, then `gc` fetched.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const { api, warnings } = await setup(t, { body: 60000 })
  // The response is dropped as soon as it arrives, its body unread; timeout.body (60 s) cannot be what frees it.
  await (async () => { await api.get('/big?token=abc') })()
  const end = performance.now() + kBound
  while (warnings().length === 0 && performance.now() < end) {
    gc()
    await sleep(20)
  }
  t.match(warnings(), [{ service: 'api', method: 'GET', path: '/big?token=***' }], 'collected and discarded within 3 s')
  t.match(warnings()[0]?.msg, /garbage-collected/)
  t.same(await within(api.getJson('/small'), kBound, 'the second call'), { ok: true })
})


import { gzipSync } from 'node:zlib'
import type { Test } from 'tap'
import { createHttpServices } from '../../index'
import { capturePino } from './pino-lines'
import { sendJson, startServer } from './server'

// The set-up test/unread-body.test.ts and test/unread-body-gc.test.ts share: a server with a 1 MB body and small
// ones, and a service on one connection whose warnings are captured.

export type LogLine = { level: number, msg: string, reqId?: string, service?: string, method?: string, path?: string, unreadFor?: number }

export const kBig = 1024 * 1024
export const kChunk = 16 * 1024
/** Generous: the fix frees the connection within timeout.body (300 ms); without it the second call never ends. */
export const kBound = 3000

/** `/big` is 1 MB in 16 KiB writes (backpressure respected); anything else is a small JSON body. */
export async function setup (t: Test, timeout: { body: number }) {
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
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
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

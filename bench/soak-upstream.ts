/**
 * The soak's downstream, in its own process: two node:http servers on 127.0.0.1 that inject faults.
 *   steady   always listening
 *   flaky    the same faults, and its listening socket is closed (connections refused) for `refuseFor` ms every
 *            `refuseEvery` ms, its open connections dropped with it
 * Both serve a small JSON body, except (at random, per request; about 3 % in all):
 *   reset      0.5 %  the socket is destroyed before any answer
 *   resetBody  0.5 %  headers and half the body are sent, then the socket is destroyed
 *   slowBody   1.5 %  the body comes in chunks with pauses; one slow body in ten outlasts the app's attempt timeout
 *   slowHead   0.3 %  the headers come after the app's attempt timeout
 *   retryAfter 0.5 %  503 with `Retry-After: 1`
 * and, for `outageFor` ms every `outageEvery` ms (the first one half a period in), every request is a 503: a
 * breaker-tripping outage. The schedule comes as JSON in argv[2] and starts on `{ cmd: 'go' }`; `{ port, flakyPort }`
 * is sent over IPC once listening, and `{ faults }` (counts by kind) in reply to `{ cmd: 'stats' }`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** When the upstream misbehaves, in milliseconds. */
export interface FaultSchedule {
  outageEvery: number
  outageFor: number
  refuseEvery: number
  refuseFor: number
  /** The app's attempt timeout: the slow faults are sized around it. */
  attemptTimeout: number
}

const schedule = JSON.parse(process.argv[2] ?? '{}') as FaultSchedule
const faults: Record<string, number> = { ok: 0, reset: 0, resetBody: 0, slowBody: 0, slowHead: 0, retryAfter: 0, outage: 0, refusals: 0 }
const payload = Buffer.from(JSON.stringify({ id: 42, name: 'soak', tags: ['a', 'b', 'c'], filler: 'x'.repeat(200) }))
const outage = Buffer.from(JSON.stringify({ error: 'outage' }))
const json = { 'content-type': 'application/json', 'content-length': String(payload.length) }
/** When the load started (`{ cmd: 'go' }`): the schedule counts from there. Until then, no outage. */
let start = Infinity
const timers = new Set<NodeJS.Timeout>()

function later (ms: number, fn: () => void): void {
  const t = setTimeout(() => { timers.delete(t); fn() }, ms)
  timers.add(t)
}

function inOutage (): boolean {
  if (start === Infinity) return false
  const phase = (Date.now() - start + schedule.outageEvery / 2) % schedule.outageEvery
  return phase < schedule.outageFor
}

/** Sends the body in four chunks with pauses that add up to `total` ms; stops if the client went away. */
function slowBody (res: ServerResponse, total: number): void {
  res.writeHead(200, json)
  const step = Math.ceil(payload.length / 4)
  let i = 0
  const next = (): void => {
    if (res.destroyed) return
    res.write(payload.subarray(i * step, (i + 1) * step))
    i++
    if (i < 4) later(total / 3, next)
    else res.end()
  }
  next()
}

function handle (req: IncomingMessage, res: ServerResponse): void {
  if (inOutage()) {
    faults.outage++
    res.writeHead(503, { 'content-type': 'application/json', 'content-length': String(outage.length) })
    res.end(outage)
    return
  }
  const r = Math.random()
  const attempt = schedule.attemptTimeout
  if (r < 0.005) {
    faults.reset++
    req.socket.destroy()
  } else if (r < 0.01) {
    faults.resetBody++
    res.writeHead(200, json)
    res.write(payload.subarray(0, payload.length >> 1))
    later(5, () => req.socket.destroy())
  } else if (r < 0.025) {
    faults.slowBody++
    slowBody(res, Math.random() < 0.1 ? attempt * 1.5 : 50 + Math.random() * attempt * 0.3)
  } else if (r < 0.028) {
    faults.slowHead++
    later(attempt * 1.5, () => { if (!res.destroyed) { res.writeHead(200, json); res.end(payload) } })
  } else if (r < 0.033) {
    faults.retryAfter++
    res.writeHead(503, { 'retry-after': '1', 'content-length': '0' })
    res.end()
  } else {
    faults.ok++
    res.writeHead(200, json)
    res.end(payload)
  }
}

function listen (server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      // The port was taken while it was closed (unlikely on loopback): try again shortly.
      if (err.code === 'EADDRINUSE' && port !== 0) later(50, () => { listen(server, port).then(resolve, reject) })
      else reject(err)
    }
    server.once('error', onError)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', onError)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

function make (): Server {
  const server = createServer(handle)
  server.keepAliveTimeout = 5000
  return server
}

async function main (): Promise<void> {
  const steady = make()
  const flaky = make()
  const port = await listen(steady, 0)
  const flakyPort = await listen(flaky, 0)
  const refuse = (): void => {
    faults.refusals++
    flaky.close()
    flaky.closeAllConnections()
    later(schedule.refuseFor, () => { listen(flaky, flakyPort).catch((err) => { console.error(err); process.exit(1) }) })
  }
  let cycle: NodeJS.Timeout | undefined
  process.on('message', (msg: { cmd?: string }) => {
    if (msg.cmd === 'go') {
      start = Date.now()
      cycle = setInterval(refuse, schedule.refuseEvery)
    }
    if (msg.cmd === 'stats') process.send?.({ faults })
  })
  process.on('disconnect', () => {
    clearInterval(cycle)
    for (const t of timers) clearTimeout(t)
    process.exit(0)
  })
  process.send?.({ port, flakyPort })
}

main().catch((err) => { console.error(err); process.exit(1) })

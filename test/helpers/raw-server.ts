import { createServer, type AddressInfo, type Socket } from 'node:net'

/** A request as the raw server parsed it: its request line and headers (lower-case names). */
export interface RawRequest {
  method: string
  path: string
  headers: Record<string, string>
}

/**
 * Answers one request by writing raw bytes to (or destroying) the socket. Return `'next'` to keep reading requests on
 * this connection after the answer was written whole; anything else stops reading it.
 */
export type RawAnswer = (socket: Socket, req: RawRequest) => 'next' | undefined | void

export interface RawServer {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** Every request line seen, in order (`GET /x`). */
  seen: string[]
  /** Runs `fn` every `ms` while `socket` is open (cleared when it closes or the server closes). */
  every: (socket: Socket, ms: number, fn: () => void) => void
  /** Runs `fn` once after `ms`, if `socket` is still open then. */
  after: (socket: Socket, ms: number, fn: () => void) => void
  /** Destroys every socket and closes the server. */
  close: () => Promise<void>
}

/**
 * A TCP server on 127.0.0.1 that reads HTTP/1.1 request heads (and skips a request body of known length) and lets
 * `answer` write whatever bytes it likes: for upstreams no `node:http` server would play.
 */
export async function startRawServer (answer: RawAnswer): Promise<RawServer> {
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const seen: string[] = []
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => sockets.delete(socket))
    let buf = Buffer.alloc(0)
    let skip = 0
    let reading = true
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      while (reading) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length)
          skip -= n
          buf = buf.subarray(n)
          if (skip > 0) return
        }
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
        buf = buf.subarray(end + 4)
        const [method = '', path = ''] = (lines.shift() ?? '').split(' ')
        const headers: Record<string, string> = {}
        for (const line of lines) {
          const i = line.indexOf(':')
          if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
        }
        skip = Number(headers['content-length'] ?? 0)
        // A chunked request body is not parsed: the answers here do not wait for it, and stop reading.
        if (headers['transfer-encoding'] !== undefined) reading = false
        seen.push(`${method} ${path}`)
        if (answer(socket, { method, path, headers }) !== 'next') reading = false
      }
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const every = (socket: Socket, ms: number, fn: () => void): void => {
    const timer = setInterval(() => {
      if (socket.destroyed || !socket.writable) {
        clearInterval(timer)
        timers.delete(timer)
        return
      }
      fn()
    }, ms)
    timers.add(timer)
    socket.once('close', () => {
      clearInterval(timer)
      timers.delete(timer)
    })
  }
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    every,
    after (socket, ms, fn) {
      const timer = setTimeout(() => {
        timers.delete(timer)
        if (!socket.destroyed) fn()
      }, ms)
      timers.add(timer)
    },
    close: async () => {
      // clearTimeout clears intervals too
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { connect, type AddressInfo, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** What the proxy was asked: a forwarded request (absolute-form `url`) or a CONNECT (`url` is `host:port`). */
export interface SeenProxyRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
}

export interface TestProxyOptions {
  /** Require `Proxy-Authorization: Basic` with these credentials; anything else gets a 407. */
  auth?: { username: string, password: string }
  /** Require exactly this `Proxy-Authorization` value (e.g. a bearer token). */
  authorization?: string
  /** Answer every CONNECT with this status instead of tunnelling. */
  refuseConnect?: number
  /** Accept CONNECT requests and never answer them. */
  hangConnect?: boolean
  /** Serve the proxy over TLS with this key and certificate. */
  tls?: { key: string, cert: string }
}

export interface TestProxy {
  /** `http://127.0.0.1:<port>` (or `https://` with `tls`), without credentials. */
  url: string
  port: number
  /** Every forwarded request and every CONNECT, in order. */
  seen: SeenProxyRequest[]
  /** Client connections the proxy accepted. */
  connections: number
  /** Resolves once the proxy and every socket it holds (both sides of each tunnel) are closed. */
  close: () => Promise<void>
}

// Hop-by-hop headers a proxy does not pass on (RFC 9110, 7.6.1), and the proxy's own credentials.
const kHopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/**
 * A small forward proxy on 127.0.0.1 and a random port, written on node:http: plain requests (absolute-form) are
 * forwarded, CONNECT requests are tunnelled. It records what it was asked and checks proxy credentials when told to.
 */
export async function startProxy (options: TestProxyOptions = {}): Promise<TestProxy> {
  const server: Server = options.tls !== undefined ? createHttpsServer(options.tls) : createServer()
  const sockets = new Set<Duplex>()
  const seen: SeenProxyRequest[] = []
  const track = (s: Duplex): void => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  }
  const expected = options.authorization ?? (options.auth !== undefined
    ? `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`
    : undefined)
  const authorized = (headers: IncomingHttpHeaders): boolean => expected === undefined || headers['proxy-authorization'] === expected
  const proxy: TestProxy = {
    url: '',
    port: 0,
    seen,
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  server.on('connection', (socket: Socket) => {
    proxy.connections++
    track(socket)
  })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    if (!authorized(req.headers)) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test proxy"', 'content-length': '0' })
      res.end()
      return
    }
    let target: URL
    try {
      target = new URL(req.url ?? '')
    } catch {
      res.writeHead(400, { 'content-length': '0' }).end()
      return
    }
    const headers: IncomingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headers)) if (!kHopByHop.has(k)) headers[k] = v
    const upstream = httpRequest({
      host: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers, agent: false
    }, (up) => {
      const back: IncomingHttpHeaders = {}
      for (const [k, v] of Object.entries(up.headers)) if (!kHopByHop.has(k)) back[k] = v
      res.writeHead(up.statusCode ?? 502, back)
      up.pipe(res)
    })
    upstream.on('socket', track)
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502, { 'content-length': '0' }).end(); else res.destroy() })
    req.pipe(upstream)
  })
  server.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    seen.push({ method: 'CONNECT', url: req.url ?? '', headers: req.headers })
    track(client)
    client.on('error', () => {})
    if (!authorized(req.headers)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test proxy"\r\nContent-Length: 0\r\n\r\n')
      return
    }
    if (options.hangConnect === true) return
    if (options.refuseConnect !== undefined) {
      client.end(`HTTP/1.1 ${options.refuseConnect} Refused\r\nContent-Length: 0\r\n\r\n`)
      return
    }
    const [host, port] = splitHostPort(req.url ?? '')
    const upstream = connect(port, host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    track(upstream)
    upstream.on('error', () => {
      if (client.writable) client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
    })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.port = (server.address() as AddressInfo).port
  proxy.url = `${options.tls !== undefined ? 'https' : 'http'}://127.0.0.1:${proxy.port}`
  return proxy
}

function splitHostPort (authority: string): [string, number] {
  const i = authority.lastIndexOf(':')
  return [authority.slice(0, i).replace(/^\[|\]$/g, ''), Number(authority.slice(i + 1))]
}

/** The proxy URL with credentials in it: `http://user:pass@127.0.0.1:<port>`. */
export function withCredentials (url: string, username: string, password: string): string {
  const u = new URL(url)
  u.username = encodeURIComponent(username)
  u.password = encodeURIComponent(password)
  return u.href.replace(/\/$/, '')
}

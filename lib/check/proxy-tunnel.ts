/**
 * The proxy a service's https upstream is reached through, and a CONNECT tunnel to that upstream, so the TLS step
 * sees the certificate the upstream shows through the proxy. undici's ProxyAgent keeps its tunnel socket to itself,
 * hence a CONNECT by hand with node:http.
 */
import { request as httpRequest, type ClientRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import type { ResolvedProxy } from '../config/resolved'
import { bounded, codeOf, hostPort, portOf, stepOf } from './step'
import type { CheckStep } from './types'

/**
 * The proxy URL for `upstream`: the configured one, or for `'env'` `HTTPS_PROXY` / `HTTP_PROXY` (lower case first, as
 * undici reads them); `undefined` when `'env'` names none. `NO_PROXY` is not read: the check goes through the proxy.
 */
export function proxyUrl (proxy: ResolvedProxy, upstream: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  if (proxy.uri !== 'env') return new URL(proxy.uri)
  const pick = (lower: string, upper: string): string | undefined => {
    const v = env[lower] ?? env[upper]
    return v === undefined || v === '' ? undefined : v
  }
  const http = pick('http_proxy', 'HTTP_PROXY')
  const chosen = upstream.protocol === 'https:' ? pick('https_proxy', 'HTTPS_PROXY') ?? http : http
  if (chosen === undefined) return undefined
  try { return new URL(chosen) } catch { return undefined }
}

/** `Proxy-Authorization` and the proxy's own headers, as ProxyAgent sends them. */
function proxyHeaders (proxy: ResolvedProxy, url: URL): Record<string, string> {
  const headers: Record<string, string> = { ...proxy.headers }
  if (proxy.token !== undefined) headers['proxy-authorization'] = proxy.token
  else if (url.username !== '' || url.password !== '') {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
    headers['proxy-authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`
  }
  return headers
}

/** Opens a CONNECT tunnel to `upstream` through the proxy: the `proxy` step, and the tunnel's socket when it opened. */
export async function probeTunnel (proxy: ResolvedProxy, url: URL, upstream: URL, timeout: number): Promise<{ step: CheckStep, socket?: Socket }> {
  const start = performance.now()
  const name = hostPort(url.hostname.replace(/^\[(.*)\]$/, '$1'), portOf(url))
  const authority = hostPort(upstream.hostname.replace(/^\[(.*)\]$/, '$1'), portOf(upstream))
  const target = `${name} -> ${authority}`
  let req: ClientRequest | undefined
  try {
    const socket = await bounded(timeout, `CONNECT ${authority} through proxy ${name}`, async () => await new Promise<Socket>((resolve, reject) => {
      const t = proxy.tls
      const options = {
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: portOf(url),
        method: 'CONNECT',
        path: authority,
        headers: { host: authority, ...proxyHeaders(proxy, url) },
        agent: false as const,
        ...(url.protocol === 'https:' ? { ca: t?.ca, cert: t?.cert, key: t?.key, passphrase: t?.passphrase, servername: t?.servername, rejectUnauthorized: t?.rejectUnauthorized ?? true } : {})
      }
      const r = req = url.protocol === 'https:' ? httpsRequest(options) : httpRequest(options)
      r.once('connect', (res, socket) => {
        if (res.statusCode === 200) {
          resolve(socket)
          return
        }
        socket.destroy()
        const auth = res.statusCode === 407 || res.statusCode === 401
        reject(Object.assign(new Error(`proxy answered ${res.statusCode ?? '?'} to CONNECT ${authority}${auth ? ' (authentication required: check the proxy credentials)' : ''}`), { code: `PROXY_${res.statusCode ?? 0}` }))
      })
      r.once('error', reject)
      r.end()
    }), () => req?.destroy())
    return { step: stepOf('proxy', target, 'ok', `CONNECT ${authority}: tunnel open`, start), socket }
  } catch (err) {
    const code = codeOf(err)
    const message = (err as Error).message.startsWith('proxy answered') || code === 'ETIMEDOUT'
      ? (err as Error).message
      : `${code ?? 'failed'}: proxy ${name}`
    return { step: stepOf('proxy', target, 'fail', message, start, { code }) }
  }
}

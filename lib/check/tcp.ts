/** The `tcp` step: a bare connect per address, bounded (`net.connect` has only an idle timeout, not a connect one). */
import { connect, type Socket } from 'node:net'
import { bounded, codeOf, hostPort, stepOf } from './step'
import type { CheckStep } from './types'

/** Where a connection goes: an address and port, or a Unix socket. */
export type Endpoint = { address: string, port: number } | { path: string }

export function endpointName (to: Endpoint): string {
  return 'path' in to ? to.path : hostPort(to.address, to.port)
}

/** Opens a TCP (or Unix socket) connection within `timeout` ms; the socket is the caller's. */
export async function openSocket (to: Endpoint, timeout: number): Promise<Socket> {
  let socket: Socket | undefined
  return await bounded(timeout, `connecting to ${endpointName(to)}`, async () => await new Promise<Socket>((resolve, reject) => {
    const s = socket = 'path' in to ? connect(to.path) : connect(to.port, to.address)
    s.once('connect', () => {
      s.removeListener('error', reject)
      resolve(s)
    })
    s.once('error', reject)
  }), () => socket?.destroy())
}

/** Connects to `to` and closes again: `ECONNREFUSED 127.0.0.1:8443` when nothing listens there. */
export async function probeTcp (to: Endpoint, timeout: number): Promise<CheckStep> {
  const start = performance.now()
  const target = endpointName(to)
  try {
    const socket = await openSocket(to, timeout)
    socket.destroy()
    return stepOf('tcp', target, 'ok', 'connected', start)
  } catch (err) {
    const code = codeOf(err)
    const result = code === 'ETIMEDOUT' ? (err as Error).message : `${code ?? (err as Error).message} ${target}`
    return stepOf('tcp', target, 'fail', result, start, { code })
  }
}

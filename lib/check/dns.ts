/** The `dns` step: Node's resolver, bounded (a `dns.lookup` takes no timeout of its own). */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { bounded, codeOf, stepOf } from './step'
import type { CheckStep } from './types'

/**
 * Resolves `host` the way connections do (`getaddrinfo`, so /etc/hosts counts), every address of it. An IP literal
 * is its own address. A lookup cannot be cancelled: past the bound it is left to finish on its own.
 */
export async function probeDns (host: string, timeout: number): Promise<CheckStep> {
  const start = performance.now()
  if (isIP(host) !== 0) return stepOf('dns', host, 'ok', `${host} (an IP address)`, start, { addresses: [host] })
  try {
    const found = await bounded(timeout, `resolving ${host}`, async () => await lookup(host, { all: true }))
    const addresses = [...new Set(found.map((a) => a.address))]
    return stepOf('dns', host, 'ok', addresses.join(', '), start, { addresses })
  } catch (err) {
    const code = codeOf(err)
    const result = code === 'ETIMEDOUT' ? (err as Error).message : `${code ?? 'failed'}: ${host} could not be resolved`
    return stepOf('dns', host, 'fail', result, start, { code, addresses: [] })
  }
}

/** The `health` step: the service's `healthPath` through the library's own client. */
import type { HttpServices } from '../services'
import { bounded, codeOf, stepOf } from './step'
import type { CheckStep } from './types'

/**
 * GETs the service's `healthPath` through a client of the library (its auth, proxy, TLS, headers and pool), with
 * retries and the breaker off (the probe registry has them off) and every wait bounded by `timeout`. Below 500 is
 * healthy: a 401 or 404 proves the service answers, which is what a deploy needs to know.
 */
export async function probeHealth (registry: HttpServices, service: string, path: string, target: string, timeout: number): Promise<CheckStep> {
  const start = performance.now()
  try {
    // The call's own total timeout ends it first, with the library's typed error; this bound only backs it up.
    const res = await bounded(timeout + 100, `GET ${target}`, async () =>
      await registry.client(service).request('GET', path, { throwHttpErrors: false, timeout }))
    await res.dump().catch(() => {})
    const status = res.status
    const ok = status < 500
    return stepOf('health', target, ok ? 'ok' : 'fail', `GET answered ${status}${ok ? '' : ' (500 or above)'}`, start, { httpStatus: status })
  } catch (err) {
    // The library's messages hold no secret and no downstream text (DESIGN.md, "Errors carry").
    const errno = (err as { errno?: unknown }).errno
    const code = typeof errno === 'string' ? errno : codeOf(err)
    return stepOf('health', target, 'fail', (err as Error).message, start, { code })
  }
}

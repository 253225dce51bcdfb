import type { Test } from 'tap'
import { createHttpServices, type HttpServices } from '../../index'
import type { CreateHttpServicesOptions } from '../../lib/services'

/**
 * A fake clock for `Date.now()` only (what RFC 9111 ages are computed with, here and in undici): `advance(ms)` moves
 * it on; timers are untouched. Restored in teardown.
 */
export function fakeDateClock (t: Test): { advance: (ms: number) => void } {
  const real = Date.now
  let offset = 0
  Date.now = () => real() + offset
  t.teardown(() => { Date.now = real })
  return { advance: (ms) => { offset += ms } }
}

/** An opened registry, closed in teardown. */
export async function openRegistry (t: Test, options: CreateHttpServicesOptions): Promise<HttpServices> {
  const services = createHttpServices(options)
  await services.open()
  t.teardown(() => services.close())
  return services
}

/** A logger that keeps its warn lines. */
export function recordingLogger (): { warnings: Array<{ obj: object, msg?: string }>, logger: CreateHttpServicesOptions['logger'] } {
  const warnings: Array<{ obj: object, msg?: string }> = []
  const noop = (): void => {}
  const logger = {
    debug: noop,
    info: noop,
    error: noop,
    warn: (obj: object, msg?: string) => { warnings.push({ obj, msg }) },
    child: () => logger
  }
  return { warnings, logger }
}

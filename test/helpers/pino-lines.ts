import { Writable } from 'node:stream'
import pino from 'pino'
import type { Logger } from '../../index'

/** A pino logger (level debug) writing into an array of its parsed JSON lines. */
export function capturePino<Line = Record<string, unknown>> (): { logger: Logger, lines: Line[] } {
  const lines: Line[] = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as Line)
      cb()
    }
  })
  return { logger: pino({ level: 'debug' }, stream) as unknown as Logger, lines }
}

import type { CheckReport } from './types'

const kLabels = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' } as const

/**
 * The report as a plain-text table for people (one row per step, in probe order), then a summary line. No colour:
 * it is read in CI logs as often as in a terminal.
 */
export function formatTable (report: CheckReport): string {
  const rows: string[][] = [['SERVICE', 'STEP', 'STATUS', 'TARGET', 'RESULT', 'TIME']]
  for (const service of report.services) {
    for (const step of service.steps) rows.push([service.service, step.step, kLabels[step.status], step.target, step.result, `${step.ms} ms`])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  const lines = rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd())
  const count = (status: string): number => report.services.filter((s) => s.status === status).length
  const n = report.services.length
  lines.push('', `${n} service${n === 1 ? '' : 's'}: ${count('ok')} ok, ${count('warn')} with warnings, ${count('fail')} failed`)
  return lines.join('\n') + '\n'
}

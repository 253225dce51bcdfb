import { execFileSync } from 'node:child_process'
import os from 'node:os'

/**
 * Pins the harness and the upstream to CPUs of their own while the throughput rows run (Linux `taskset`, every
 * thread of each process), and lets them go again after. On a 2-vCPU machine the two processes otherwise take turns
 * on both CPUs, and the client's CPU per request then also counts the upstream stealing its caches and its time
 * slices: the rows' ratios moved by ±3 % between two runs of the same client. Pinned, two copies of one client
 * read within 1 % of each other. Nothing is pinned with fewer than 2 CPUs, without `taskset`, or with `--no-pin`.
 */
export function pinApart (harness: number, upstream: number | undefined): { pinned: boolean, release: () => void } {
  const cpus = os.cpus().length
  const none = { pinned: false, release: () => {} }
  if (cpus < 2 || upstream === undefined || process.platform !== 'linux') return none
  const set = (pid: number, list: string): boolean => {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  }
  const all = `0-${cpus - 1}`
  if (!set(upstream, String(cpus - 1))) return none
  set(harness, '0')
  return {
    pinned: true,
    release: () => {
      set(harness, all)
      set(upstream, all)
    }
  }
}

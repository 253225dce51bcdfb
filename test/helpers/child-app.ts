import type { Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { within } from './wait'

export interface ChildApp {
  child: ChildProcess
  /** Resolves when the child has exited (by itself or killed). */
  exited: Promise<void>
  /** Its stdout and stderr so far. */
  output: () => string
}

/**
 * Runs the TypeScript `fixture` in a child process (tsx: much faster to start than tap's loader on a busy machine)
 * until it prints `ready`; teardown kills it (SIGKILL) if it is still alive.
 */
export async function startChildApp (t: Test, fixture: string, env: Record<string, string>, startTimeout = 30_000): Promise<ChildApp> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  let exitedFlag = false
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { exitedFlag = true; resolve() }) })
  child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
  t.teardown(async () => {
    if (!exitedFlag && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    await exited
  })
  await within(`the app is ready (output so far: ${output})`, (async () => {
    while (!output.includes('ready\n')) {
      if (exitedFlag) throw new Error(`the app exited before it was ready:\n${output}`)
      await sleep(20)
    }
  })(), startTimeout)
  return { child, exited, output: () => output }
}

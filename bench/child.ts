import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'

/** A child process running a bench script through tsx, talking over IPC. */
export interface Child {
  proc: ChildProcess
  /** Sends a message and waits for the next reply. */
  ask: <T>(msg: object) => Promise<T>
  kill: () => Promise<void>
}

/** Starts `bench/<script>` in its own process and waits for its first message (e.g. `{ port }`). */
export async function startChild<T> (script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, execArgv: string[] = []): Promise<{ child: Child, first: T }> {
  const proc = fork(join(__dirname, script), args, {
    execArgv: ['--import', 'tsx', ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const next = async <R>(): Promise<R> => await new Promise<R>((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`${script} exited with ${code}`))
    proc.once('exit', onExit)
    proc.once('message', (m) => { proc.off('exit', onExit); resolve(m as R) })
  })
  const first = await next<T>()
  const child: Child = {
    proc,
    ask: async <R>(msg: object) => {
      const reply = next<R>()
      proc.send(msg)
      return await reply
    },
    kill: async () => {
      if (proc.exitCode !== null) return
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill()
      await exited
    }
  }
  return { child, first }
}

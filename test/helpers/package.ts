import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { Test } from 'tap'
import { tempDir } from './interop'

/** The repository: the package's root. */
export const root = resolve(__dirname, '../..')
const tsc = join(root, 'node_modules/typescript/bin/tsc')

/** Longest wait for one child process (a build or a type check): generous, for a loaded 2-core machine. */
export const kProcessTimeout = 180_000

export interface Ran {
  /** Exit code; `null` when the process was killed (see `output`). */
  code: number | null
  output: string
}

/**
 * Runs a command to its end, killed after `timeout` ms. Never rejects: a process that could not start or was killed
 * has `code: null` and says why in `output`.
 */
export async function run (command: string, args: string[], cwd: string, timeout = kProcessTimeout): Promise<Ran> {
  return await new Promise<Ran>((resolve) => {
    execFile(command, args, { cwd, timeout, maxBuffer: 64 * 1024 * 1024, env: childEnv() }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`
      if (err === null) resolve({ code: 0, output })
      else if (typeof err.code === 'number') resolve({ code: err.code, output })
      else resolve({ code: null, output: `${command} ${args.join(' ')}: ${err.killed ? `killed after ${timeout} ms` : err.message}\n${output}` })
    })
  })
}

/**
 * The environment of a child process: without tap's `NODE_OPTIONS` (its loaders) and `NODE_V8_COVERAGE` (a build or
 * a type check is not code under test; its coverage files would land among the suite's).
 */
function childEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' }
  delete env.NODE_V8_COVERAGE
  return env
}

function newest (dir: string, pick: (name: string) => boolean, found = 0): number {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) found = newest(path, pick, found)
    else if (pick(entry.name)) found = Math.max(found, statSync(path).mtimeMs)
  }
  return found
}

/** `true` when `dist/` holds a build of the current sources (CI runs `npm run build` before the tests). */
function distIsFresh (): boolean {
  const built = ['dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/testing.d.ts'].map((f) => join(root, f))
  if (!built.every((f) => existsSync(f))) return false
  const sources = Math.max(
    newest(join(root, 'lib'), (name) => name.endsWith('.ts')),
    ...['index.ts', 'testing.ts', 'tsconfig.json', 'tsconfig.build.json'].map((f) => statSync(join(root, f)).mtimeMs))
  return Math.min(...built.map((f) => statSync(f).mtimeMs)) >= sources
}

/**
 * The directory of the package as it is installed: the repository when `dist/` is fresh, else a build of the
 * sources (`tsconfig.build.json`) with the repository's package.json in a temporary directory, removed at teardown.
 */
export async function builtPackage (t: Test): Promise<string> {
  if (distIsFresh()) return root
  const dir = tempDir(t, 'fhs-package-')
  copyFileSync(join(root, 'package.json'), join(dir, 'package.json'))
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir')
  const built = await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], root)
  if (built.code !== 0) throw new Error(`dist/ is stale and building the sources into ${dir} failed:\n${built.output}`)
  return dir
}

/**
 * A project that depends on the package, in a temporary directory removed at teardown: `package.json` with `type`,
 * the given files, and a node_modules linking `fastify-http-services` (to `pkg`), `fastify` and `@types/node`.
 */
export function consumerProject (t: Test, pkg: string, type: 'module' | 'commonjs', files: Record<string, string>): string {
  const dir = tempDir(t, 'fhs-consumer-')
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type }, null, 2))
  mkdirSync(join(dir, 'node_modules/@types'), { recursive: true })
  symlinkSync(pkg, join(dir, 'node_modules/fastify-http-services'), 'dir')
  symlinkSync(join(root, 'node_modules/fastify'), join(dir, 'node_modules/fastify'), 'dir')
  symlinkSync(join(root, 'node_modules/@types/node'), join(dir, 'node_modules/@types/node'), 'dir')
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  return dir
}

/** Type-checks a consumer project with the repository's TypeScript (`tsc --noEmit -p <project>`). */
export async function typecheck (dir: string, project = 'tsconfig.json'): Promise<Ran> {
  return await run(process.execPath, [tsc, '--noEmit', '-p', project], dir)
}

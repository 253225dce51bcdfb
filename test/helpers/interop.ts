import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { testCerts } from './certs'
import { closedPort } from './server'

/** The directory holding the interop tests and their server config templates. */
const kInteropDir = join(__dirname, '..', 'interop')

/** `true` when the environment says this is a CI run (`CI=true`, as `.ci/run` sets it): interop tests must run there. */
export const inCi = ['true', '1'].includes((process.env.CI ?? '').toLowerCase())

// Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
const kExtraDirs = ['/usr/sbin', '/usr/local/sbin', '/sbin']

/** The absolute path of an executable named `name` on PATH or in the sbin directories, or `undefined`. */
export function findBinary (name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), ...kExtraDirs]
  for (const dir of dirs) {
    const file = join(dir, name)
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {}
  }
  return undefined
}

/**
 * Finds the server binary an interop test needs. When it is missing, outside CI the tests are skipped with a message
 * that says how to install it; with `CI=true` the missing binary fails the test run instead.
 */
export function interopBinary (t: Test, name: string, debianPackage: string): { path: string, skip: false } | { path: undefined, skip: string } {
  const path = findBinary(name)
  if (path !== undefined) return { path, skip: false }
  const how = `${name} is not installed: run \`sudo apt-get install -y --no-install-recommends ${debianPackage}\` ` +
    '(Debian/Ubuntu) to run the interop tests'
  if (inCi) {
    t.fail(`${how}. CI=true, so the interop tests must run (.ci/run installs it)`)
    return { path: undefined, skip: `${name} is missing (failed above)` }
  }
  return { path: undefined, skip: how }
}

/** A fresh temporary directory (short path: servers put sockets and pid files there), removed in teardown. */
export function tempDir (t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Reads a config template next to the interop tests and fills its `{{name}}` placeholders; an unknown one throws. */
export function renderTemplate (file: string, values: Record<string, string | number>): string {
  return readFileSync(file, 'utf8').replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`${file}: no value for {{${name}}}`)
    return String(values[name])
  })
}

/** Writes `text` to `dir/name` and returns the path. */
export function writeIn (dir: string, name: string, text: string | Buffer): string {
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}

/** A port on 127.0.0.1 that was free a moment ago, for a server that cannot be told to pick one itself. */
export const freePort = closedPort

export interface RunningServer {
  child: ChildProcess
  /** What the server wrote to stdout and stderr so far. */
  output: () => string
}

/**
 * Starts a server in the foreground of a child process and waits until `port` on 127.0.0.1 accepts connections.
 * Teardown stops it by its own PID (SIGTERM) and waits for it to exit. If it exits or does not listen within
 * `startTimeout`, the test fails with its output.
 */
export async function runServer (
  t: Test, command: string, args: string[], port: number, startTimeout = 10000
): Promise<RunningServer> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { output += c.toString() })
  let exited: string | undefined
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => { exited = `exited with ${signal ?? code}`; resolve() })
    child.once('error', (err) => { exited = `failed to start: ${err.message}`; resolve() })
  })
  t.teardown(async () => {
    if (exited === undefined && child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
    await exit
  })
  const until = Date.now() + startTimeout
  while (!(await accepts(port))) {
    if (exited !== undefined) throw new Error(`${command} ${exited} before listening on ${port}:\n${output}`)
    if (Date.now() > until) throw new Error(`${command} did not listen on ${port} within ${startTimeout} ms:\n${output}`)
    await sleep(20)
  }
  return { child, output: () => output }
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

export interface Nginx {
  /** `https://127.0.0.1:<port>`: TLS with the test CA's certificate, HTTP/2 by ALPN. */
  httpsUrl: string
  httpsPort: number
  /** `http://127.0.0.1:<port>`: plain HTTP/1.1. */
  httpUrl: string
  httpPort: number
  /** The document root: files written under `files/` are served at `/files/`. */
  www: string
}

/** Runs nginx from `test/interop/nginx.conf.template` on two free loopback ports, in a temporary directory. */
export async function startNginx (t: Test, binary: string): Promise<Nginx> {
  const certs = testCerts()
  const dir = tempDir(t, 'hs-nginx-')
  mkdirSync(join(dir, 'tmp'))
  const www = join(dir, 'www')
  mkdirSync(join(www, 'files'), { recursive: true })
  writeIn(dir, 'server.pem', certs.serverCert)
  writeIn(dir, 'server.key', certs.serverKey)
  const httpsPort = await freePort()
  const httpPort = await freePort()
  const conf = writeIn(dir, 'nginx.conf', renderTemplate(join(kInteropDir, 'nginx.conf.template'), { dir, httpsPort, httpPort }))
  await runServer(t, binary, ['-g', 'daemon off;', '-e', 'stderr', '-c', conf, '-p', `${dir}/`], httpsPort)
  return { httpsUrl: `https://127.0.0.1:${httpsPort}`, httpsPort, httpUrl: `http://127.0.0.1:${httpPort}`, httpPort, www }
}

export interface Tinyproxy {
  /** `http://127.0.0.1:<port>`, without credentials. */
  url: string
  port: number
}

/**
 * Runs tinyproxy from `test/interop/tinyproxy.conf.template` on a free loopback port: Basic auth with `user` and
 * `password`, CONNECT allowed to `connectPort` only.
 */
export async function startTinyproxy (
  t: Test, binary: string, options: { connectPort: number, user: string, password: string }
): Promise<Tinyproxy> {
  const dir = tempDir(t, 'hs-tinyproxy-')
  const port = await freePort()
  const conf = writeIn(dir, 'tinyproxy.conf', renderTemplate(join(kInteropDir, 'tinyproxy.conf.template'), { dir, port, ...options }))
  await runServer(t, binary, ['-d', '-c', conf], port)
  return { url: `http://127.0.0.1:${port}`, port }
}

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string
  port: number
  /** Stops the server (SIGTERM) and waits for it to exit: Redis going away in the middle of a test. */
  stop: () => Promise<void>
}

/**
 * Runs redis-server (Debian's `redis-server` package) in the foreground on a free loopback port (or `port`: Redis
 * coming back where it was after `stop()`), without persistence, in a temporary directory. Teardown stops it when the
 * test did not.
 */
export async function startRedis (t: Test, binary: string, port?: number): Promise<RedisServer> {
  const dir = tempDir(t, 'hs-redis-')
  port ??= await freePort()
  const server = await runServer(t, binary, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no',
    '--enable-debug-command', 'local'
  ], port)
  const exited = new Promise<void>((resolve) => {
    if (server.child.exitCode !== null || server.child.signalCode !== null) resolve()
    else server.child.once('exit', () => resolve())
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM')
      await exited
    }
  }
}

/**
 * What the check tests share: a small PKI whose leaf certificates have chosen validity windows (expired days ago,
 * near expiry) and names (`other.test`), TLS and HTTP servers on 127.0.0.1, a config file in a temporary directory,
 * and the CLI run as a child process under a bound.
 */
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createSecureServer, type Http2Session } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { startServer, type Handler, type TestServer } from '../helpers/server'

export interface Leaf { cert: string, key: string }

export interface CheckCerts {
  ca: string
  /** For localhost and 127.0.0.1, valid for 90 days. */
  good: Leaf
  /** For other.test only. */
  wrongName: Leaf
  /** For localhost and 127.0.0.1; expired 3 days ago. */
  expired: Leaf
  /** For localhost and 127.0.0.1; expires in 5 days. */
  soon: Leaf
}

let cached: CheckCerts | undefined
const kDay = 86_400_000

/** `YYYYMMDDHHMMSSZ`, the form `openssl ca -startdate` takes. */
function asn1Time (ms: number): string {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'
}

/** The PKI, made once per process with the `openssl` CLI (`openssl ca`: the one form that takes start and end dates). */
export function checkCerts (): CheckCerts {
  if (cached !== undefined) return cached
  const dir = mkdtempSync(join(tmpdir(), 'fhs-check-certs-'))
  try {
    const f = (name: string): string => join(dir, name)
    const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] }) }
    const key = (name: string): void => { openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(name)) }
    writeFileSync(f('index.txt'), '')
    writeFileSync(f('serial'), '01\n')
    writeFileSync(f('ca.cnf'), [
      '[ca]', 'default_ca = d', '[d]', 'database = index.txt', 'new_certs_dir = .', 'serial = serial', 'default_md = sha256',
      'policy = p', 'copy_extensions = copy', 'unique_subject = no', 'x509_extensions = leaf', '[p]', 'commonName = supplied',
      '[leaf]', 'basicConstraints = CA:FALSE', 'keyUsage = digitalSignature', 'extendedKeyUsage = serverAuth', ''
    ].join('\n'))
    key('ca.key')
    openssl('req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', '2', '-subj', '/CN=check test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('ca.pem'))
    const now = Date.now()
    const leaf = (name: string, cn: string, san: string, from: number, to: number): Leaf => {
      key(`${name}.key`)
      openssl('req', '-new', '-key', f(`${name}.key`), '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-out', f(`${name}.csr`))
      openssl('ca', '-batch', '-config', f('ca.cnf'), '-cert', f('ca.pem'), '-keyfile', f('ca.key'), '-in', f(`${name}.csr`),
        '-startdate', asn1Time(from), '-enddate', asn1Time(to), '-out', f(`${name}.pem`))
      return { cert: readFileSync(f(`${name}.pem`), 'utf8'), key: readFileSync(f(`${name}.key`), 'utf8') }
    }
    const local = 'DNS:localhost,IP:127.0.0.1'
    cached = {
      ca: readFileSync(f('ca.pem'), 'utf8'),
      good: leaf('good', 'localhost', local, now - kDay, now + 90 * kDay),
      wrongName: leaf('wrong', 'other.test', 'DNS:other.test', now - kDay, now + 90 * kDay),
      expired: leaf('expired', 'localhost', local, now - 30 * kDay, now - 3 * kDay - 3_600_000),
      soon: leaf('soon', 'localhost', local, now - kDay, now + 5 * kDay + 3_600_000)
    }
    return cached
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** An http server on 127.0.0.1 answering with `handler`, closed at teardown. */
export async function httpServer (t: Test, handler: Handler): Promise<TestServer> {
  const server = await startServer(handler)
  t.teardown(server.close)
  return server
}

/** An https server on 127.0.0.1 with `leaf`: HTTP/1.1 only, or with `h2` node:http2's (HTTP/1.1 allowed too). Closed at teardown. */
export async function httpsServer (t: Test, leaf: Leaf, handler: Handler, h2 = false): Promise<{ port: number, url: string }> {
  if (!h2) {
    const server = await startServer(handler, createHttpsServer({ cert: leaf.cert, key: leaf.key, ALPNProtocols: ['http/1.1'] }))
    t.teardown(server.close)
    return server
  }
  const server = createSecureServer({ cert: leaf.cert, key: leaf.key, allowHTTP1: true }, (req, res) => {
    req.resume()
    req.on('end', () => { void handler(req as never, res as never, { method: req.method, url: req.url, headers: req.headers, body: '' }) })
  })
  const sessions = new Set<Http2Session>()
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sessions) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const port = (server.address() as AddressInfo).port
  return { port, url: `https://127.0.0.1:${port}` }
}

/** A TCP server that accepts connections and never says a word: a TLS handshake with it never completes. */
export async function silentServer (t: Test): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createNetServer((s) => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as AddressInfo).port
}

/** A fresh directory removed at teardown. */
export function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fhs-check-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes `config` as JSON into a temporary `services.json` and returns its path. */
export function configFile (t: Test, config: unknown, name = 'services.json'): string {
  const file = join(tempDir(t), name)
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config))
  return file
}

export const root = resolve(__dirname, '../..')

export interface CliRun { code: number | null, stdout: string, stderr: string }

/**
 * Runs the CLI entry (cli.ts through tsx) with `args`, killed after `limit` ms: generous, since a loaded 2-core
 * machine starts tsx slowly. Never rejects.
 */
export async function runCli (args: string[], env: NodeJS.ProcessEnv = {}, limit = 60_000): Promise<CliRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '', ...env }
  delete childEnv.NODE_V8_COVERAGE
  for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k]
  return await new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(root, 'cli.ts'), ...args], { cwd: root, env: childEnv, timeout: limit },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
        resolve({ code, stdout, stderr: err !== null && code === null ? `${stderr}\n(killed: ${err.message})` : stderr })
      })
  })
}

/**
 * `fastify-http-services check <file> [--json] [--timeout ms]`: the command behind the package's bin. Exit codes:
 * 0 every service healthy (warnings allowed), 1 invalid usage or config, 2 some service failed.
 */
import { parseArgs } from 'node:util'
import { isHttpServicesError } from '../errors'
import { checkServices, kDefaultCheckTimeout } from './run'
import { formatTable } from './table'

export const kUsage = `Usage: fastify-http-services check <services.yaml|services.json> [--json] [--timeout <ms>]

Validates the config file as the plugin does (\${VAR} read from the environment), then probes every service:
DNS, TCP (or the Unix socket, or the proxy), TLS (trust, name, expiry), HTTP/2 when allowH2, the OAuth2 token
endpoint, and healthPath.

Options:
  --json          print the report as JSON (see the README, "Checking a config before deploy")
  --timeout <ms>  bound on each probe step, in milliseconds (default ${kDefaultCheckTimeout})
  -h, --help      show this help

Exit codes: 0 all healthy (warnings allowed), 1 invalid usage or config, 2 some service failed.
`

/** Where the command writes. */
export interface CliIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
}

const processIo: CliIo = {
  stdout: (text) => { process.stdout.write(text) },
  stderr: (text) => { process.stderr.write(text) }
}

/** Runs the command with `argv` (the arguments after the program name) and resolves with its exit code. */
export async function main (argv: string[], io: CliIo = processIo): Promise<number> {
  let values: { json?: boolean, timeout?: string, help?: boolean }
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { json: { type: 'boolean' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } }
    }))
  } catch (err) {
    io.stderr(`${(err as Error).message}\n\n${kUsage}`)
    return 1
  }
  if (values.help === true) {
    io.stdout(kUsage)
    return 0
  }
  const [command, file, ...extra] = positionals
  if (command !== 'check' || file === undefined || extra.length > 0) {
    const problem = command === undefined ? 'no command given' : command !== 'check' ? `unknown command ${JSON.stringify(command)}` : file === undefined ? 'no config file given' : `unexpected argument ${JSON.stringify(extra[0])}`
    io.stderr(`${problem}\n\n${kUsage}`)
    return 1
  }
  const timeout = values.timeout === undefined ? kDefaultCheckTimeout : Number(values.timeout)
  if (!/^\d+$/.test(values.timeout ?? '1') || !Number.isSafeInteger(timeout) || timeout <= 0) {
    io.stderr(`--timeout: expected a positive whole number of milliseconds, got ${JSON.stringify(values.timeout)}\n\n${kUsage}`)
    return 1
  }
  let report
  try {
    report = await checkServices({ configFile: file }, { timeout })
  } catch (err) {
    // A config problem: the plugin's own message, which names the key and never a secret.
    if (isHttpServicesError(err)) {
      io.stderr(`${err.message}\n`)
      return 1
    }
    throw err
  }
  io.stdout(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatTable(report))
  return report.status === 'fail' ? 2 : 0
}

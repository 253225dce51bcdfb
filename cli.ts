#!/usr/bin/env node
/** The package's bin (`npx fastify-http-services check services.yaml`): see lib/check/cli.ts. */
import { main } from './lib/check/cli'

/**
 * Exits once what was written reached stdout and stderr (a pipe is asynchronous on some systems: `check --json | jq`
 * must get the whole report), but without waiting for the event loop to empty: a DNS lookup past its bound cannot be
 * cancelled and would keep the process waiting for it.
 */
function exit (code: number): void {
  process.stdout.write('', () => {
    process.stderr.write('', () => { process.exit(code) })
  })
}

main(process.argv.slice(2)).then(exit, (err: unknown) => {
  process.stderr.write(`fastify-http-services: ${err instanceof Error ? err.message : String(err)}\n`)
  exit(1)
})

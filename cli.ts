#!/usr/bin/env node
/** The package's bin (`npx fastify-http-services check services.yaml`): see lib/check/cli.ts. */
import { main } from './lib/check/cli'

main(process.argv.slice(2)).then((code) => {
  // Exits at once: a DNS lookup past its bound cannot be cancelled and would keep the process waiting for it.
  process.exit(code)
}, (err: unknown) => {
  process.stderr.write(`fastify-http-services: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})

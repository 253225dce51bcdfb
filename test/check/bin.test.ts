import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { builtPackage, kProcessTimeout, root, run } from '../helpers/package'

// A build when dist/ is stale (test/helpers/package.ts), bounded by kProcessTimeout.
t.setTimeout(kProcessTimeout + 60_000)

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>, scripts: Record<string, string>, files: string[] }

t.test('the bin of package.json is a file the build makes: a node script that runs the check command', async (t) => {
  const bin = pkg.bin['fastify-http-services']
  t.equal(bin, 'dist/cli.js', 'the command is named after the package (npx fastify-http-services)')
  t.ok(pkg.files.some((f) => bin.startsWith(`${f}/`)), 'it is among the packed files')
  t.match(pkg.scripts.build, new RegExp(`chmodSync\\('${bin.replace('.', '\\.')}', 0o755\\)`), 'the build makes it executable (tsc writes 0644)')
  const dir = await builtPackage(t)
  const file = join(dir, bin)
  t.match(readFileSync(file, 'utf8'), /^#!\/usr\/bin\/env node\n/, 'it starts with the node shebang')
  // builtPackage runs tsc alone when dist/ is stale; `npm run build` (CI, prepare) also sets the mode.
  if (dir === root) t.ok((statSync(file).mode & 0o111) !== 0, 'the built file is executable')
  const help = await run(process.execPath, [file, '--help'], dir, 60_000)
  t.equal(help.code, 0, 'it runs', { output: help.output })
  t.match(help.output, /^Usage: fastify-http-services check /)
})

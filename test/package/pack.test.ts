import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import { kProcessTimeout, root, run } from '../helpers/package'

t.setTimeout(kProcessTimeout + 30_000)

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  license: string
  main: string
  types: string
  scripts: Record<string, string>
  exports: Record<string, string | Record<string, string>>
  typesVersions: Record<string, Record<string, string[]>>
}

/** Every file the package.json points at: main, types, each `exports` target, each `typesVersions` path. */
function entryFiles (): string[] {
  const out = [pkg.main, pkg.types]
  for (const target of Object.values(pkg.exports)) out.push(...(typeof target === 'string' ? [target] : Object.values(target)))
  for (const map of Object.values(pkg.typesVersions)) for (const paths of Object.values(map)) out.push(...paths)
  return out.map((p) => normalize(p))
}

t.test('npm pack ships the build, its types, the testing entry, README and LICENSE, and nothing else', async (t) => {
  if (!existsSync(join(root, 'dist/index.js'))) {
    t.fail('dist/ is missing: run `npm run build` first (CI builds before `npm test`; `npm install` builds through `prepare`)')
    return
  }
  // --ignore-scripts: `prepare` would rebuild dist/ in the work tree; what is packed is what is there.
  const packed = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root)
  t.equal(packed.code, 0, 'npm pack --dry-run exits cleanly', { output: packed.output })
  if (packed.code !== 0) return
  const json = packed.output.slice(packed.output.indexOf('['))
  const files = new Set((JSON.parse(json) as Array<{ files: Array<{ path: string }> }>)[0].files.map((f) => normalize(f.path)))

  for (const file of ['package.json', 'README.md', 'LICENSE', ...entryFiles()]) t.ok(files.has(file), `${file} is packed`)
  t.ok(files.has('dist/lib/plugin.js') && files.has('dist/lib/plugin.d.ts'), 'the modules the entries load')

  const outside = [...files].filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(f))
  t.same(outside, [], 'nothing outside dist/ but package.json, README.md and LICENSE (no tests, no sources)')
  const sources = [...files].filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  t.same(sources, [], 'no TypeScript sources')
  const dangling: string[] = []
  for (const map of [...files].filter((f) => f.endsWith('.map'))) {
    const { sources: mapped = [] } = JSON.parse(readFileSync(join(root, map), 'utf8')) as { sources?: string[] }
    for (const source of mapped) if (!files.has(normalize(join(dirname(map), source)))) dangling.push(`${map} -> ${source}`)
  }
  t.same(dangling, [], 'no source map points at a file left out (an old build? run `npm run build`)')
})

t.test('the package can be installed from git: prepare builds it, and the LICENSE it names is there', async (t) => {
  t.match(pkg.scripts.prepare, /\bnpm run build\b/, 'prepare builds dist/ (npm runs it for git installs and npm ci)')
  t.match(pkg.scripts.build, /\btsc -p tsconfig\.build\.json\b/)
  t.equal(pkg.license, 'MIT')
  const license = readFileSync(join(root, 'LICENSE'), 'utf8')
  t.match(license, /^MIT License\n\nCopyright \(c\) 2026 fastify-http-services contributors\n/)
  t.match(license, /THE SOFTWARE IS PROVIDED "AS IS"/)
})

import t from 'tap'
import { join } from 'node:path'
import ts from 'typescript'
import { builtPackage, kProcessTimeout, root, run } from '../helpers/package'

// A build when dist/ is stale, bounded by kProcessTimeout; the checks below read declaration files only.
t.setTimeout(kProcessTimeout * 2)

// fastify-plugin adds the camel-cased plugin name as a property of the function; the package does not declare it.
const kAddedByFastifyPlugin = 'fastifyHttpServices'

interface Exported { name: string, value: boolean }

// Helpers of lib/errors the library uses inside (stamping and describing a call's target); the README does not
// document them, so the main entry does not export them.
const kInternalErrorHelpers = ['markCallerTimeout', 'isCallerTimeout', 'describe', 'redactPath', 'stamp', 'withRetryAfter']

/** The exports of each declaration file, and whether each is a value (not type-only). */
function exportsOf (files: string[]): Map<string, Exported[]> {
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
    typeRoots: [join(root, 'node_modules/@types')]
  })
  const checker = program.getTypeChecker()
  const out = new Map<string, Exported[]>()
  for (const file of files) {
    const source = program.getSourceFile(file)
    if (source === undefined) throw new Error(`${file}: not found`)
    const moduleSymbol = checker.getSymbolAtLocation(source)
    if (moduleSymbol === undefined) throw new Error(`${file}: not a module`)
    out.set(file, checker.getExportsOfModule(moduleSymbol).map((symbol) => {
      const declaration = symbol.declarations?.[0]
      const typeOnly = declaration !== undefined && ts.isExportSpecifier(declaration) &&
        (declaration.isTypeOnly || declaration.parent.parent.isTypeOnly)
      const target = (symbol.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(symbol) : symbol
      return { name: symbol.name, value: !typeOnly && (target.flags & ts.SymbolFlags.Value) !== 0 }
    }))
  }
  return out
}

// One build (when dist/ is stale) for every test of this file, removed at its end.
let pkg = ''
t.before(async () => { pkg = await builtPackage(t) })

t.test('the declared exports are the exports at run time, and cover every error and option type', async (t) => {
  const index = join(pkg, 'dist/index.d.ts')
  const errors = join(pkg, 'dist/lib/errors.d.ts')
  const config = join(pkg, 'dist/lib/config/types.d.ts')
  const exported = exportsOf([index, errors, config])
  const declared = exported.get(index) as Exported[]

  // Loaded in a child process: the build is not code under test, and its coverage must not mix with the sources'.
  const probe = 'const m = require(process.argv[1]); console.log(JSON.stringify({ keys: Object.keys(m), type: typeof m, ' +
    'same: m.default === m && m.httpServices === m, loaded: Object.keys(require.cache) }))'
  const ran = await run(process.execPath, ['-e', probe, join(pkg, 'dist/index.js')], pkg)
  t.equal(ran.code, 0, 'the build loads', { output: ran.output })
  if (ran.code !== 0) return
  const runtime = JSON.parse(ran.output) as { keys: string[], type: string, same: boolean, loaded: string[] }
  const values = declared.filter((e) => e.value).map((e) => e.name).sort()
  t.same(runtime.keys.filter((k) => k !== kAddedByFastifyPlugin).sort(), values,
    'index.ts: every value in the namespace has its module.exports line, and no line is undeclared')
  t.equal(runtime.type, 'function', 'the module is the plugin')
  t.ok(runtime.same, 'its `default` and `httpServices` are the module itself')
  const dist = join(pkg, 'dist')
  const testKit = runtime.loaded.filter((file) => file.startsWith(dist) && /[\\/](testing\.js$|lib[\\/]testing[\\/])/.test(file))
  t.strictSame(testKit, [], 'the main entry loads no module of the test kit (`fastify-http-services/testing`)')
  t.ok(runtime.loaded.some((file) => file.startsWith(join(dist, 'lib'))), 'the probe sees the modules the entry loads')

  const names = new Set(declared.map((e) => e.name))
  for (const file of [errors, config]) {
    const missing = (exported.get(file) as Exported[]).map((e) => e.name)
      .filter((name) => !names.has(name) && !kInternalErrorHelpers.includes(name))
    t.same(missing, [], `every export of ${file.slice(pkg.length + 1)} is exported by the package (add it to index.ts)`)
  }
  t.ok(names.has('Dispatcher'), "undici's Dispatcher type, for the dispatcher option")
  t.strictSame(kInternalErrorHelpers.filter((name) => names.has(name)), [], 'internal error helpers stay internal')
})

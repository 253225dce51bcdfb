import t from 'tap'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import ts from 'typescript'

/**
 * The package's import graph, read from the sources with the TypeScript parser (no program, no type check: a parse
 * per file). `import type` counts like any import: a type in the wrong file is how a cycle starts (DESIGN.md, "Layers":
 * nothing calls upward; "a policy never imports another").
 */
const root = resolve(__dirname, '../..')

/** Policies the pipeline holds today; the test fails when one of them is no longer recognised as a policy. */
const kKnownPolicies = [
  'attempt-timeout', 'breaker', 'bulkhead', 'deadline', 'fallback', 'hedge', 'rate-limit', 'redirect', 'retry'
].map((name) => `lib/pipeline/${name}.ts`)

interface Edge {
  to: string
  /** Every import of `to` in the file is type-only (`import type`, `import('…').T`). */
  typeOnly: boolean
}

interface Module {
  edges: Map<string, Edge>
  /** Exports a `PolicyFactory`: a policy of the pipeline. */
  policy: boolean
  /** Relative imports that name no file. */
  unresolved: string[]
}

function sourceFiles (dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`
    if (entry.isDirectory()) out.push(...sourceFiles(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** The source file a relative specifier names (`./retry`, `./retry.js`, `./pipeline` for its index), or `undefined`. */
function resolveSpecifier (from: string, specifier: string): string | undefined {
  const base = join(dirname(join(root, from)), specifier).replace(/\.[cm]?js$/, '')
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) return relative(root, candidate).split(sep).join('/')
  }
  return undefined
}

function isTypeOnlyImport (node: ts.ImportDeclaration): boolean {
  const clause = node.importClause
  if (clause === undefined) return false // `import './x'`: run for its effects
  if (clause.isTypeOnly) return true
  const bindings = clause.namedBindings
  return clause.name === undefined && bindings !== undefined && ts.isNamedImports(bindings) &&
    bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly)
}

function isPolicyFactoryExport (node: ts.Node): boolean {
  if (!ts.isVariableStatement(node)) return false
  if (node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) !== true) return false
  return node.declarationList.declarations.some((d) =>
    d.type !== undefined && ts.isTypeReferenceNode(d.type) && d.type.typeName.getText() === 'PolicyFactory')
}

function readModule (file: string): Module {
  const text = readFileSync(join(root, file), 'utf8')
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const module: Module = { edges: new Map(), policy: false, unresolved: [] }
  const add = (specifier: string, typeOnly: boolean): void => {
    if (!specifier.startsWith('.')) return
    const to = resolveSpecifier(file, specifier)
    if (to === undefined) {
      module.unresolved.push(specifier)
      return
    }
    const edge = module.edges.get(to)
    if (edge === undefined) module.edges.set(to, { to, typeOnly })
    else edge.typeOnly &&= typeOnly
  }
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, isTypeOnlyImport(node))
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly)
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)) {
      add(node.moduleReference.expression.text, node.isTypeOnly)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true)
    } else if (ts.isCallExpression(node) && node.arguments.length === 1 && ts.isStringLiteral(node.arguments[0]) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(node.expression) && node.expression.text === 'require'))) {
      add(node.arguments[0].text, false)
    }
    if (file.startsWith('lib/pipeline/') && isPolicyFactoryExport(node)) module.policy = true
    ts.forEachChild(node, visit)
  }
  visit(source)
  return module
}

const files = ['index.ts', 'testing.ts', ...sourceFiles('lib')].sort()
const graph = new Map(files.map((file) => [file, readModule(file)]))
const policies = files.filter((file) => graph.get(file)?.policy === true)

/** `a -> b -(type)-> c`: a path of imports, type-only edges marked. */
function describePath (path: string[]): string {
  let out = path[0]
  for (let i = 1; i < path.length; i++) {
    const edge = graph.get(path[i - 1])?.edges.get(path[i])
    out += ` ${edge?.typeOnly === true ? '-(type)->' : '->'} ${path[i]}`
  }
  return out
}

/** The shortest path of imports from `from` to `to` through files `within` allows, or `undefined`. */
function shortestPath (from: string, to: string, within: (file: string) => boolean): string[] | undefined {
  const parent = new Map<string, string>()
  const queue = [from]
  for (let i = 0; i < queue.length; i++) {
    const file = queue[i]
    for (const next of graph.get(file)?.edges.keys() ?? []) {
      if (next === to) {
        const path = [to, file]
        for (let at = file; at !== from;) path.push(at = parent.get(at) as string)
        return path.reverse()
      }
      if (parent.has(next) || next === from || !within(next)) continue
      parent.set(next, file)
      queue.push(next)
    }
  }
  return undefined
}

/** The strongly connected sets of files of more than one file, or of one that imports itself (Tarjan). */
function stronglyConnected (): string[][] {
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  const connect = (file: string): void => {
    index.set(file, counter)
    low.set(file, counter++)
    stack.push(file)
    onStack.add(file)
    for (const next of graph.get(file)?.edges.keys() ?? []) {
      if (!index.has(next)) {
        connect(next)
        low.set(file, Math.min(low.get(file) as number, low.get(next) as number))
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file) as number, index.get(next) as number))
      }
    }
    if (low.get(file) !== index.get(file)) return
    const set: string[] = []
    let member: string
    do {
      member = stack.pop() as string
      onStack.delete(member)
      set.push(member)
    } while (member !== file)
    if (set.length > 1 || graph.get(file)?.edges.has(file) === true) out.push(set.sort())
  }
  for (const file of files) if (!index.has(file)) connect(file)
  return out
}

t.test('reads the import graph: every relative import names a file, type-only imports included', async (t) => {
  t.ok(files.includes('lib/pipeline/index.ts') && files.length > 20, 'finds the sources')
  for (const [file, module] of graph) t.strictSame(module.unresolved, [], `${file}: every relative import resolves`)
  const pipeline = graph.get('lib/pipeline/index.ts') as Module
  for (const policy of kKnownPolicies) t.ok(pipeline.edges.has(policy), `the pipeline imports ${policy}`)
  t.equal(pipeline.edges.get('lib/pipeline/types.ts')?.typeOnly, true, '`import type` is an edge, marked type-only')
  t.equal(pipeline.edges.get('lib/pipeline/retry.ts')?.typeOnly, false, 'a value import is not type-only')
})

t.test('recognises the pipeline\'s policies: files exporting a PolicyFactory', async (t) => {
  for (const policy of kKnownPolicies) t.ok(policies.includes(policy), `${policy} is a policy`)
  for (const shared of ['lib/pipeline/retry-plan.ts', 'lib/pipeline/retry-budget.ts', 'lib/pipeline/types.ts', 'lib/pipeline/index.ts']) {
    t.notOk(policies.includes(shared), `${shared} is not a policy`)
  }
})

t.test('no import cycles among the package\'s sources (type imports count)', async (t) => {
  // The shortest cycle through each file of each strongly connected set, each written from its first file once.
  const cycles = new Set<string>()
  for (const set of stronglyConnected()) {
    for (const file of set) {
      const path = (shortestPath(file, file, (f) => set.includes(f)) as string[]).slice(1)
      const first = path.indexOf([...path].sort()[0])
      const rotated = [...path.slice(first), ...path.slice(0, first)]
      cycles.add(describePath([...rotated, rotated[0]]))
    }
  }
  t.strictSame([...cycles], [], 'each entry is an import cycle; -(type)-> marks a type-only import')
})

t.test('no policy imports another, directly or through a module it imports', async (t) => {
  const found: string[] = []
  for (const policy of policies) {
    for (const other of policies) {
      if (other === policy) continue
      // Through shared modules only: a path through a third policy is that policy's own finding.
      const path = shortestPath(policy, other, (file) => !policies.includes(file))
      if (path !== undefined) found.push(describePath(path))
    }
  }
  t.strictSame(found, [], 'each entry is a policy reaching another; what two policies share belongs below both')
})

t.test('the main entry does not reach the test kit, even through a type', async (t) => {
  const reached = [...graph.keys()].filter((file) => file === 'testing.ts' || file.startsWith('lib/testing/'))
    .map((kit) => shortestPath('index.ts', kit, () => true)).filter((path) => path !== undefined)
    .map((path) => describePath(path as string[]))
  t.strictSame(reached, [], 'each entry is a path of imports from index.ts into the test kit')
})

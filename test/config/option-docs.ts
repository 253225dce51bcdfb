/**
 * Readers for test/config/option-sources.test.ts: the `@default` tags of the option types (through the TypeScript
 * compiler, so inherited keys and union members are seen as the compiler sees them), the README's option tables, and
 * the reading of a documented default ("`0` (off)", "`500` ms", "off", "—") as a claim about a runtime default.
 */
import { readFileSync } from 'node:fs'
import { isDeepStrictEqual } from 'node:util'
import ts from 'typescript'

/** One key of an option type, as its declaration documents it. */
export interface DocumentedKey {
  /** The text of its `@default` tag, when it has one. */
  tag: string | undefined
  /** Option types (declared in the scanned files) its value may be: the group the key's object form takes. */
  groups: string[]
}

/** Every interface of `files` by name: its keys (inherited ones included) and which of them it declares itself. */
export interface DocumentedType {
  keys: Map<string, DocumentedKey>
  own: Set<string>
}

export function readOptionTypes (files: string[]): Map<string, DocumentedType> {
  const program = ts.createProgram(files, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true, types: ['node'] })
  const checker = program.getTypeChecker()
  const declarations: ts.InterfaceDeclaration[] = []
  for (const file of files) {
    const source = program.getSourceFile(file)
    if (source === undefined) throw new Error(`${file}: not in the program`)
    declarations.push(...source.statements.filter(ts.isInterfaceDeclaration))
  }
  const names = new Set(declarations.map((d) => d.name.text))
  const out = new Map<string, DocumentedType>()
  for (const declaration of declarations) {
    const keys = new Map<string, DocumentedKey>()
    for (const property of checker.getPropertiesOfType(checker.getTypeAtLocation(declaration.name))) {
      const tag = property.getJsDocTags(checker).find((t) => t.name === 'default')
      const type = checker.getTypeOfSymbolAtLocation(property, declaration)
      const members = type.isUnion() ? type.types : [type]
      const groups = members.map((m) => (m.aliasSymbol ?? m.getSymbol())?.name).filter((n): n is string => n !== undefined && names.has(n))
      keys.set(property.name, { tag: tag === undefined ? undefined : ts.displayPartsToString(tag.text).trim(), groups })
    }
    const own = new Set(declaration.members.map((m) => m.name?.getText()).filter((n): n is string => n !== undefined))
    out.set(declaration.name.text, { keys, own })
  }
  return out
}

/** One documented key of a README option table: `HttpServicesOptions` or `ServiceOptions` at its root. */
export interface ReadmeOption {
  root: 'HttpServicesOptions' | 'ServiceOptions'
  /** The dotted key, as the table writes it (`retry.budget`). */
  key: string
  /** The default cell, or its part for this key when one row documents several (`` `500` ms / `2` ``). */
  cell: string
  /** The meaning cell. */
  meaning: string
}

/**
 * The rows of every `| option | default | meaning |` table. The table under "Plugin options", and a key written
 * "plugin `x`", are registry options; the others are service options. A row naming several keys
 * (`` `retry.baseDelay` / `factor` ``) gives each its part of the default cell, or the whole cell when it has one part.
 * Rows with an empty default cell point elsewhere and are skipped.
 */
export function readReadmeOptions (file: string): ReadmeOption[] {
  const lines = readFileSync(file, 'utf8').split('\n')
  const out: ReadmeOption[] = []
  let heading = ''
  let inTable = false
  let fenced = false
  for (const line of lines) {
    if (line.startsWith('```')) fenced = !fenced
    if (fenced) continue
    const h = /^#+ (.*)$/.exec(line)
    if (h !== null) heading = h[1]
    if (/^\| option \| default \| meaning \|$/.test(line)) { inTable = true; continue }
    if (!line.startsWith('|')) { inTable = false; continue }
    if (!inTable || line.startsWith('|---')) continue
    const [keyCell, defaultCell, meaning] = cells(line)
    if (defaultCell === '') continue
    const plugin = keyCell.startsWith('plugin ')
    const root = plugin || heading === 'Plugin options' ? 'HttpServicesOptions' : 'ServiceOptions'
    const keys = keyCell.replace(/^plugin /, '').split(' / ').map((k) => /^`([^`]+)`$/.exec(k)?.[1] ?? `unreadable key cell ${keyCell}`)
    const parent = keys[0].includes('.') ? keys[0].slice(0, keys[0].lastIndexOf('.') + 1) : ''
    const parts = defaultCell.split(' / ')
    keys.forEach((k, i) => {
      out.push({ root, key: k.includes('.') || i === 0 ? k : parent + k, cell: parts.length === keys.length ? parts[i] : defaultCell, meaning })
    })
  }
  return out
}

/** The cells of a table row; a `|` inside a code span belongs to the cell. */
function cells (line: string): string[] {
  const out: string[] = []
  let cell = ''
  let code = false
  for (const ch of line.slice(1, line.trimEnd().length - 1)) {
    if (ch === '`') code = !code
    if (ch === '|' && !code) { out.push(cell.trim()); cell = '' } else cell += ch
  }
  out.push(cell.trim())
  return out
}

/** What a documented default says about the runtime default. */
export type Claim =
  | { kind: 'none' } // no default: "—", "required", or no `@default` tag
  | { kind: 'off' }
  | { kind: 'on' }
  | { kind: 'value', value: unknown }
  | { kind: 'derived', text: string } // computed from another option ("`rate`", "host of `baseUrl`")

export function claimOf (text: string | undefined): Claim {
  if (text === undefined) return { kind: 'none' }
  // A unit or a gloss after the value: "`0` (off)", "`500` ms", "10485760 (10 MiB)".
  const t = text.trim().replace(/\s*\([^)]*\)$/, '').replace(/\s+ms$/, '')
  if (t === '' || t === '—' || t === 'required') return { kind: 'none' }
  if (t === 'off') return { kind: 'off' }
  if (t === 'on') return { kind: 'on' }
  const literal = parseLiteral(/^`([^`]*)`$/.exec(t)?.[1] ?? t)
  return literal === undefined ? { kind: 'derived', text: t } : { kind: 'value', value: literal.value }
}

/** A JavaScript literal as the docs write one (`'full'`, `{ ratio: 0.2 }`, `[408, 429]`), or `undefined`. */
export function parseLiteral (text: string): { value: unknown } | undefined {
  const json = text
    .replace(/'([^'\\]*)'/g, (_, s: string) => JSON.stringify(s))
    .replace(/([{,]\s*)([A-Za-z_$][\w$]*)\s*:/g, '$1"$2":')
  try {
    return { value: JSON.parse(json) }
  } catch {
    return undefined
  }
}

/**
 * Whether `claim` holds for the runtime default `actual` of a key whose object form is a group with defaults
 * `group`: an object claimed for a key that is on by default (`true` or `{}`) names that group's defaults.
 */
export function holds (claim: Claim, actual: unknown, group: Record<string, unknown> | undefined): boolean {
  switch (claim.kind) {
    case 'none':
    case 'derived':
      return actual === undefined
    case 'off':
      return actual === false || actual === 0
    case 'on':
      return actual === true || (group !== undefined && isObject(actual))
    case 'value': {
      if (isDeepStrictEqual(claim.value, actual)) return true
      const on = actual === true ? group : isObject(actual) && group !== undefined ? { ...group, ...actual } : undefined
      return on !== undefined && isObject(claim.value) && Object.entries(claim.value).every(([k, v]) => isDeepStrictEqual(v, on[k]))
    }
  }
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

import t from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { OptionGroup, Row } from '../../lib/config/options/group'
import { claimOf, holds, parseLiteral, readOptionTypes, readReadmeOptions, type DocumentedKey } from './option-docs'

// Each option is defined once, in lib/config/options/<group>.ts; the compiler makes every key have a checker and a
// default there. What it cannot see is prose: the `@default` tags and the README. These tests hold them to the rows.

const kRoot = join(__dirname, '..', '..')
const kOptionsDir = join(kRoot, 'lib', 'config', 'options')
const kFiles = readdirSync(kOptionsDir).filter((f) => f.endsWith('.ts')).map((f) => join(kOptionsDir, f))

type Group = OptionGroup<Record<string, Row<unknown>>>

/** Every group the option files export, by name (`timeoutOptions`). Found by shape, so a new file is covered too. */
const groups = new Map<string, Group>()
for (const file of kFiles) {
  for (const [name, value] of Object.entries(require(file) as Record<string, unknown>)) {
    if (typeof value === 'object' && value !== null && 'rows' in value && 'defaults' in value && 'check' in value) groups.set(name, value as Group)
  }
}

const types = readOptionTypes(kFiles)

/** `TimeoutOptions` -> `timeoutOptions`: a group is named like its type. */
const groupName = (type: string): string => type[0].toLowerCase() + type.slice(1)

/** The runtime default of `key` and the defaults of the group its object form takes. */
function runtime (type: string, key: string, documented: DocumentedKey): { actual: unknown, group: Record<string, unknown> | undefined } {
  const row = groups.get(groupName(type))?.rows[key]
  const sub = documented.groups.map((g) => groups.get(groupName(g))).find((g) => g !== undefined)
  return { actual: row?.default, group: sub?.defaults as Record<string, unknown> | undefined }
}

t.test('every option group has its type, and every type with @default tags has its group', async (t) => {
  t.ok(groups.size >= 15, `found the groups (${[...groups.keys()].join(', ')})`)
  for (const name of groups.keys()) {
    const type = name[0].toUpperCase() + name.slice(1)
    t.ok(types.has(type), `${name}: an interface ${type} declared beside it`)
  }
  for (const [type, { keys, own }] of types) {
    const tagged = [...own].filter((k) => keys.get(k)?.tag !== undefined)
    if (tagged.length > 0) t.ok(groups.has(groupName(type)), `${type} documents defaults (${tagged.join(', ')}): a group ${groupName(type)} holds them`)
  }
})

t.test('every @default tag is the runtime default, and every runtime default has its tag', async (t) => {
  for (const [type, { keys }] of types) {
    const group = groups.get(groupName(type))
    if (group === undefined) continue
    for (const [key, documented] of keys) {
      t.ok(Object.hasOwn(group.rows, key), `${type}.${key}: has a row in ${groupName(type)}`)
      const { actual, group: sub } = runtime(type, key, documented)
      const tag = documented.tag === undefined ? 'no @default tag' : `@default ${documented.tag}`
      t.ok(holds(claimOf(documented.tag), actual, sub), `${type}.${key}: ${tag}, runtime default ${JSON.stringify(actual)}`)
    }
  }
})

t.test("every default in the README's option tables is the runtime default", async (t) => {
  const rows = readReadmeOptions(join(kRoot, 'README.md'))
  t.ok(rows.length >= 60, `read the option tables (${rows.length} keys)`)
  for (const { root, key, cell, meaning } of rows) {
    const at = `README ${root === 'HttpServicesOptions' ? 'plugin' : 'service'} option ${key}`
    let type: string = root
    let documented: DocumentedKey | undefined
    const path = key.split('.')
    for (const [i, name] of path.entries()) {
      documented = types.get(type)?.keys.get(name)
      if (documented === undefined || i === path.length - 1) break
      // The member of a union that is an option group (`RedisOptions` in `string | RedisOptions | RedisClient`).
      type = documented.groups.find((g) => groups.has(groupName(g))) ?? documented.groups[0] ?? `(no group under ${name})`
    }
    if (documented === undefined) {
      t.fail(`${at}: names no option (${type} has no key ${path[path.length - 1]})`)
      continue
    }
    const { actual, group } = runtime(type, path[path.length - 1], documented)
    t.ok(holds(claimOf(cell), actual, group), `${at}: README says ${JSON.stringify(cell)}, runtime default ${JSON.stringify(actual)}`)
    // "`true` or `{ ttl: 10000, … }`" spells out the defaults `true` takes: all of them, as they are.
    const spelled = /^`true` or `(\{[^`]*\})`/.exec(meaning)
    if (spelled !== null) {
      t.same(parseLiteral(spelled[1])?.value, group, `${at}: the object after "\`true\` or" is the group's defaults`)
    }
  }
})

t.test('the readers understand the way defaults are written', async (t) => {
  t.same(claimOf('`0` (off)'), { kind: 'value', value: 0 })
  t.same(claimOf('`500` ms'), { kind: 'value', value: 500 })
  t.same(claimOf('10485760 (10 MiB)'), { kind: 'value', value: 10485760 })
  t.same(claimOf("{ remaining: 'x', attempt: false }"), { kind: 'value', value: { remaining: 'x', attempt: false } })
  t.same(claimOf('—'), { kind: 'none' })
  t.same(claimOf(undefined), { kind: 'none' })
  t.same(claimOf('host of `baseUrl`'), { kind: 'derived', text: 'host of `baseUrl`' })
  t.ok(holds(claimOf('off'), 0, undefined), 'off is 0 too')
  t.ok(holds(claimOf('on'), {}, { a: 1 }), 'on is a group on with its defaults')
  t.ok(holds(claimOf('{ a: 1 }'), {}, { a: 1, b: 2 }), 'an object names some of the defaults of a group that is on')
  t.notOk(holds(claimOf('{ a: 2 }'), {}, { a: 1 }), 'and each must be the default')
  t.notOk(holds(claimOf('`1`'), 2, undefined), 'a different value is a mismatch')
  t.notOk(holds(claimOf('—'), 5, undefined), 'an undocumented default is a mismatch')
})

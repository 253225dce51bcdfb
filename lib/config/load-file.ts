import { readFileSync } from 'node:fs'
import { extname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { InvalidOptionsError } from '../errors'
import { forbiddenKey, invalid, isPlainObject, kForbiddenKeys, show } from './validate'

/** `${NAME}` or `${NAME:-default}`; `$${NAME}` is a literal `${NAME}`. */
const kPlaceholder = /\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g
const kWholePlaceholder = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/
const kNumber = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

/**
 * Keys whose values are always text, so a placeholder there is never turned into a number or boolean
 * (a numeric passphrase or an API version header must stay a string). Header values are matched by
 * their parent key, `headers`.
 */
const kTextKeys = new Set([
  'baseUrl', 'ca', 'cert', 'key', 'passphrase', 'servername', 'forwardHeaders', 'methods',
  'requestIdHeader', 'deadlineHeader', 'jitter', 'configFile', 'secret'
])

/** Keys that are text under one parent only: `deadlineHeaders.attempt` is a header name, `timeout.attempt` is ms. */
const kTextUnder = new Map([['remaining', 'deadlineHeaders'], ['attempt', 'deadlineHeaders']])

type Path = Array<string | number>

/**
 * Reads a YAML (`.yaml`, `.yml`) or JSON (`.json`) config file with the shape of `HttpServicesOptions`, and
 * replaces `${NAME}` and `${NAME:-default}` in every string value with the variable from `env` (the default is
 * used when the variable is unset or empty). A relative `path` resolves against `process.cwd()`.
 *
 * A scalar that is exactly one placeholder and whose result reads as a finite number or as `true` / `false`
 * becomes that number or boolean, so `connections: ${POOL_SIZE}` works; under keys that only take text
 * (`baseUrl`, `headers.*`, tls fields, header names…) it stays a string.
 *
 * @throws InvalidOptionsError with key `configFile` when the file cannot be read or parsed (the message gives the
 * line and column); with the dotted key of a `__proto__`, `constructor` or `prototype` key; and, when values name
 * unset variables without a default, one error listing every such variable with its dotted key (`key` is the first).
 */
export function loadConfigFile (path: string, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const file = resolve(path)
  const ext = extname(file).toLowerCase()
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') {
    throw invalid('configFile', `expected a .yaml, .yml or .json file, got ${show(path)}`)
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw invalid('configFile', `cannot read ${file}: ${(err as Error).message}`)
  }
  let data: unknown
  try {
    // `merge: true` lets YAML anchors (`<<: *common`) share blocks between services.
    data = ext === '.json' ? JSON.parse(text) : parseYaml(text, { merge: true })
  } catch (err) {
    throw invalid('configFile', `cannot parse ${file}${parseProblem(err as Error, text, ext === '.json')}`)
  }
  // A file with nothing but comments is an empty configuration, not an error.
  if (data === null || data === undefined) return {}
  if (!isPlainObject(data)) {
    throw invalid('configFile', `expected an object at the top of ${file}, got ${show(data)}`)
  }
  const missing: Missing[] = []
  const out = interpolate(data, [], env, missing) as Record<string, unknown>
  if (missing.length > 0) throw unsetVariables(missing)
  return out
}

/** An unset variable without a default, and the dotted key of the value that names it. */
interface Missing { name: string, key: string }

/**
 * Where a parse error is and what it is, after `cannot parse <file>`: ` at line L, column C: <problem>`, without
 * the parser's excerpt of the file (a line may hold a secret). A failing line holding a `${…}` gets a hint: YAML reads
 * `{` of an unquoted placeholder inside a flow collection (`{ … }`, `[ … ]`) as a nested map, and JSON has no bare
 * values: quoted, the placeholder still becomes a number or boolean.
 */
function parseProblem (err: Error, text: string, json: boolean): string {
  let problem: string
  let offset: number | undefined
  if (json) {
    ({ problem, offset } = jsonProblem(err.message, text))
  } else {
    problem = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?\s*$/, '')
    const pos = (err as { pos?: unknown }).pos
    if (Array.isArray(pos) && typeof pos[0] === 'number') offset = pos[0]
  }
  if (offset === undefined) return `: ${problem}`
  offset = Math.min(offset, text.length)
  const before = text.slice(0, offset)
  const line = before.split('\n').length
  const column = offset - before.lastIndexOf('\n')
  const start = before.lastIndexOf('\n') + 1
  const end = text.indexOf('\n', offset)
  const source = text.slice(start, end === -1 ? text.length : end)
  let hint = ''
  if (source.includes('${')) {
    hint = json
      ? ' (a ${…} placeholder is a JSON string: write "${NAME}"; quoted, a number or boolean still becomes one)'
      : ' (quote a ${…} placeholder inside { … } or [ … ]: attempts: "${N:-3}"; quoted, a number or boolean still becomes one)'
  }
  return ` at line ${line}, column ${column}: ${problem}${hint}`
}

/**
 * V8's JSON error without its excerpt of the file, and the offset it names. "Unexpected token 'x', <excerpt> is not
 * valid JSON" names none: the parser stops at the first error, so the shortest prefix of the file that fails with
 * the same token ends just after it (a binary search: a handful of parses, on a failure only).
 */
function jsonProblem (message: string, text: string): { problem: string, offset: number | undefined } {
  const at = /^(.*?) in JSON at position (\d+)/.exec(message)
  if (at !== null) return { problem: at[1], offset: Number(at[2]) }
  const token = /^Unexpected token '[^']*'/.exec(message)
  if (token === null) return { problem: message.split(/[,"\n]/)[0], offset: undefined }
  const head = `${token[0]},`
  let lo = 1
  let hi = text.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    let same = false
    try {
      JSON.parse(text.slice(0, mid))
    } catch (err) {
      same = (err as Error).message.startsWith(head)
    }
    if (same) hi = mid
    else lo = mid + 1
  }
  return { problem: token[0], offset: lo - 1 }
}

function unsetVariables (missing: Missing[]): InvalidOptionsError {
  const first = missing[0]
  if (missing.length === 1) {
    const err = invalid(first.key, `environment variable ${first.name} is not set`)
    err.message = `configFile ${err.message}`
    return err
  }
  const keys = new Map<string, string[]>()
  for (const { name, key } of missing) {
    const list = keys.get(name)
    if (list === undefined) keys.set(name, [key])
    else list.push(key)
  }
  const list = [...keys].map(([name, at]) => `${name} (${at.join(', ')})`).join(', ')
  const err = invalid(first.key, '')
  err.message = `configFile: ${keys.size === 1 ? 'environment variable is' : `${keys.size} environment variables are`} not set: ${list}`
  return err
}

function interpolate (value: unknown, path: Path, env: NodeJS.ProcessEnv, missing: Missing[]): unknown {
  if (typeof value === 'string') return interpolateString(value, path, env, missing)
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env, missing))
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      // Assigned, `__proto__` would replace `out`'s prototype: the file would lose the whole object, silently.
      if (kForbiddenKeys.has(k)) {
        const err = invalid(dotted([...path, k]), forbiddenKey(k))
        err.message = `configFile ${err.message}`
        throw err
      }
      out[k] = interpolate(v, [...path, k], env, missing)
    }
    return out
  }
  return value
}

function interpolateString (value: string, path: Path, env: NodeJS.ProcessEnv, missing: Missing[]): unknown {
  if (!value.includes('${')) return value
  const result = value.replace(kPlaceholder, (match, escaped: string | undefined, name: string, fallback: string | undefined) => {
    if (escaped !== undefined) return match.slice(1)
    const v = env[name]
    if (v !== undefined && (v !== '' || fallback === undefined)) return v
    if (fallback !== undefined) return fallback
    missing.push({ name, key: dotted(path) })
    return ''
  })
  if (!kWholePlaceholder.test(value) || isText(path)) return result
  if (result === 'true') return true
  if (result === 'false') return false
  if (kNumber.test(result)) {
    const n = Number(result)
    if (Number.isFinite(n)) return n
  }
  return result
}

function isText (path: Path): boolean {
  const names = path.filter((p): p is string => typeof p === 'string')
  const last = names[names.length - 1]
  if (typeof path[path.length - 1] === 'string' && names[names.length - 2] === 'headers' && names[names.length - 3] !== 'services') {
    return true
  }
  return kTextKeys.has(last) || (kTextUnder.has(last) && kTextUnder.get(last) === names[names.length - 2])
}

/** `services.billing.baseUrl[0]` */
function dotted (path: Path): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`
  return out
}

import { readFileSync } from 'node:fs'
import { extname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { invalid, isPlainObject, show } from './validate'

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
  'requestIdHeader', 'deadlineHeader', 'remaining', 'attempt', 'jitter', 'configFile'
])

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
 * @throws InvalidOptionsError with key `configFile` when the file cannot be read or parsed, and with the dotted
 * key of the value when it names an unset variable without a default.
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
    throw invalid('configFile', `cannot parse ${file}: ${(err as Error).message}`)
  }
  // A file with nothing but comments is an empty configuration, not an error.
  if (data === null || data === undefined) return {}
  if (!isPlainObject(data)) {
    throw invalid('configFile', `expected an object at the top of ${file}, got ${show(data)}`)
  }
  return interpolate(data, [], env) as Record<string, unknown>
}

function interpolate (value: unknown, path: Path, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') return interpolateString(value, path, env)
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env))
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, [...path, k], env)
    return out
  }
  return value
}

function interpolateString (value: string, path: Path, env: NodeJS.ProcessEnv): unknown {
  if (!value.includes('${')) return value
  const result = value.replace(kPlaceholder, (match, escaped: string | undefined, name: string, fallback: string | undefined) => {
    if (escaped !== undefined) return match.slice(1)
    const v = env[name]
    if (v !== undefined && (v !== '' || fallback === undefined)) return v
    if (fallback !== undefined) return fallback
    const err = invalid(dotted(path), `environment variable ${name} is not set`)
    err.message = `configFile ${err.message}`
    throw err
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
  return kTextKeys.has(last)
}

/** `services.billing.baseUrl[0]` */
function dotted (path: Path): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`
  return out
}

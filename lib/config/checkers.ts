/**
 * The checker combinators and the wording of every validation message. They know no option: the option groups
 * (options/*.ts) compose them, and the messages they throw (`<key>: expected <what>, got <value>`) are the public
 * face of validation, kept byte for byte.
 */
import { InvalidOptionsError } from '../errors'

/**
 * Checks the value found at a dotted key and throws an `InvalidOptionsError` on the first problem.
 * `expected` says what the checker accepts, in words, so unions can compose their message.
 */
export interface Checker {
  (value: unknown, key: string): void
  readonly expected: string
}

// Keys whose values are secrets, or hold them: never echoed in a message (a trailing newline from a secret file is
// a common way to get a header value refused).
// `auth` and its scheme objects hold secrets too: a secret given where the object belongs (`auth: "tok"`,
// `basic: "u:p"`) must not be echoed either. An item of a list of secrets (`secret[1]`) is one too.
const kSecretKey = /(^|\.)(headers\.[^.]+|passphrase|key|cert|token|password|secrets?|clientSecret|bearer|apiKey\.value|extraParams\.[^.]+|auth|auth\.(apiKey|basic|oauth2))(\[\d+\])*$/i

/**
 * Throws `InvalidOptionsError` with the message `<key>: expected <what>, got <value>`. At a secret key a string shows
 * as `***` and a number, list or object by its kind only (a YAML key of digits is a number; a list may hold secrets).
 */
export function fail (key: string, expected: string, value: unknown): never {
  if (hasLiteralPrototype(value)) throw invalid(join(key, '__proto__'), forbiddenKey('__proto__'))
  const shown = kSecretKey.test(key) ? showSecret(key, value) : show(value)
  throw invalid(key, `expected ${expected}, got ${shown}`)
}

/** A value found at a secret key, as a message shows it. */
function showSecret (key: string, value: unknown): string {
  if (typeof value === 'string') return value !== '' && !key.endsWith(`.${value}`) ? '"***"' : show(value)
  if (typeof value === 'number' || typeof value === 'bigint') return 'a number'
  if (Array.isArray(value)) return 'a list'
  if (isPlainObject(value)) return 'an object'
  return show(value)
}

/** A string as a message may show it: URL credentials and query values redacted. */
function redactText (text: string): string {
  return text.replace(/^([a-z][a-z\d+.-]*:\/\/)[^/?#@]*@/i, '$1***@').replace(/([?&][^=&#]*=)[^&#]*/g, '$1***')
}

/** An `InvalidOptionsError` whose message is `<key>: <problem>` and whose `key` is set. */
export function invalid (key: string, problem: string): InvalidOptionsError {
  const err = new InvalidOptionsError(`${key === '' ? 'options' : key}: ${problem}`)
  err.key = key
  return err
}

/** The value as it reads in a message: JSON for data, a word for what JSON cannot show. */
export function show (value: unknown): string {
  switch (typeof value) {
    case 'string': return truncate(JSON.stringify(redactText(value)))
    case 'number': return String(value)
    case 'undefined': return 'undefined'
    case 'function': return 'a function'
    case 'bigint': return `${value}n`
    case 'symbol': return value.toString()
    case 'boolean': return String(value)
  }
  if (value === null) return 'null'
  if (Buffer.isBuffer(value)) return 'a Buffer'
  if (!Array.isArray(value) && !isPlainObject(value)) {
    const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name
    return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object'
  }
  try {
    return truncate(JSON.stringify(value))
  } catch {
    return Array.isArray(value) ? 'an array' : 'an object'
  }
}

function truncate (text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

/** `true` for `{}` literals, `Object.create(null)` and parsed YAML/JSON objects. */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A checker from a description and a test. */
export function rule (expected: string, test: (value: unknown) => boolean): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!test(value)) fail(key, expected, value)
  }, { expected })
}

export const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
export const isString = (v: unknown): v is string => typeof v === 'string'
export const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean'
const isFalse = (v: unknown): v is false => v === false

/** An integer in `[min, max]`. */
export function integer (min: number, max = Infinity): Checker {
  const expected = max === Infinity ? `an integer >= ${min}` : `an integer between ${min} and ${max}`
  return rule(expected, (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max)
}

/** A finite number that passes `test`. */
export function number (expected: string, test: (n: number) => boolean): Checker {
  return rule(expected, (v) => isNumber(v) && test(v))
}

export const boolean = rule('a boolean', isBoolean)

/** One of the listed values. */
export function oneOf (...values: unknown[]): Checker {
  return rule(`one of ${values.map(show).join(', ')}`, (v) => values.includes(v))
}

/** An array whose every item passes `item`; `[i]` is appended to the key of an item. */
export function arrayOf (item: Checker, expected: string, minLength = 0): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!Array.isArray(value) || value.length < minLength) fail(key, expected, value)
    value.forEach((v, i) => item(v, `${key}[${i}]`))
  }, { expected })
}

/** A plain object of any keys: `name` checks each key (given the dotted key), `item` each value. */
export function record (name: Checker, item: Checker): Checker {
  return Object.assign((value: unknown, key: string) => {
    if (!isPlainObject(value)) fail(key, 'an object', value)
    for (const k of Object.keys(value)) {
      const at = join(key, k)
      if (kForbiddenKeys.has(k)) throw invalid(at, forbiddenKey(k))
      name(k, at)
      item(value[k], at)
    }
  }, { expected: 'an object' })
}

export interface ObjectRules {
  /** Keys that must be present. */
  required?: string[]
  /** Extra words after "unknown option" for keys that are known elsewhere. */
  hints?: Record<string, string>
  /** Checks across keys, run after each key passed. */
  refine?: (value: Record<string, unknown>, key: string) => void
}

/** A plain object with exactly the keys of `spec`; `undefined` values count as absent. */
export function object (spec: Record<string, Checker>, rules: ObjectRules = {}): Checker {
  const known = Object.keys(spec)
  return Object.assign((value: unknown, key: string) => {
    if (!isPlainObject(value)) fail(key, 'an object', value)
    for (const k of Object.keys(value)) {
      const at = join(key, k)
      if (kForbiddenKeys.has(k)) throw invalid(at, forbiddenKey(k))
      if (!Object.hasOwn(spec, k)) throw invalid(at, unknownOption(k, known, rules.hints?.[k]))
      if (value[k] !== undefined) spec[k](value[k], at)
    }
    for (const k of rules.required ?? []) {
      if (value[k] === undefined) spec[k](undefined, join(key, k))
    }
    rules.refine?.(value, key)
  }, { expected: 'an object' })
}

/**
 * A union: the first branch whose `test` matches checks the value (so its message is the precise one);
 * when none matches, the message lists what every branch accepts.
 */
export function variants (...branches: Branch[]): Checker {
  const words = branches.map(([, c]) => c.expected)
  return variantsAs(`${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`, ...branches)
}

/** A branch of a union: the values `test` picks out are checked by `check`. */
export type Branch = [test: (v: unknown) => boolean, check: Checker]

/** `variants` with its own wording for the value that matches no branch. */
export function variantsAs (expected: string, ...branches: Branch[]): Checker {
  return Object.assign((value: unknown, key: string) => {
    for (const [test, check] of branches) {
      if (test(value)) return check(value, key)
    }
    fail(key, expected, value)
  }, { expected })
}

/** Accepts anything: for keys that are someone else's business, with `expected` naming what a union would say. */
export const ok = (expected: string): Checker => rule(expected, () => true)
/** The `false` branch of a union (`false` turns the option off). */
export const falseBranch: Branch = [isFalse, ok('false')]

/** `false` or what `check` accepts (`test` tells which of the two the value is meant to be). */
export function falseOr (check: Checker, test: (v: unknown) => boolean = isPlainObject): Checker {
  return variants(falseBranch, [test, check])
}

/** A boolean (on with defaults / off) or the object `check` accepts. */
export function booleanOr (check: Checker): Checker {
  return variants([isBoolean, boolean], [isPlainObject, check])
}

/**
 * Keys that change or shadow an object's prototype when assigned (`__proto__`) or that every object already answers
 * (`constructor`, `prototype`): no option has them, and a config walked with plain assignment would lose the file
 * that holds them (a `__proto__` key replaces the object's prototype instead of adding an entry).
 */
export const kForbiddenKeys: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

/** The problem of a refused key, after `<dotted key>: `. */
export function forbiddenKey (k: string): string {
  return `the key ${JSON.stringify(k)} is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)`
}

/**
 * `true` for an object whose prototype is a plain object that is not a class's prototype: what an object literal with
 * a `__proto__: {…}` key makes (it sets the prototype instead of adding a key). `fail` names it as the refused key
 * rather than as "an instance of Object".
 */
function hasLiteralPrototype (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto !== Object.prototype && isPlainObject(proto) && !Object.hasOwn(proto, 'constructor')
}

function join (key: string, k: string): string {
  return key === '' ? k : `${key}.${k}`
}

function unknownOption (name: string, known: string[], hint: string | undefined): string {
  if (hint !== undefined) return `unknown option (${hint})`
  const close = suggest(name, known)
  return close === undefined
    ? `unknown option (expected one of: ${known.join(', ')})`
    : `unknown option (did you mean "${close}"?)`
}

/** The known name closest to `name` when it is close enough to be a typo (case-insensitive edit distance). */
export function suggest (name: string, known: string[]): string | undefined {
  const limit = Math.max(1, Math.floor(name.length / 3))
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    // In a name of three letters or fewer a swap changes too much to read as a typo (`dsn` is not `dns`).
    const d = distance(name.toLowerCase(), candidate.toLowerCase(), name.length > 3)
    if (d <= limit && d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** Edit distance; with `swaps`, swapping two neighbours counts as one edit (`qurey` is one edit from `query`). */
function distance (a: string, b: string, swaps: boolean): number {
  let before: number[] = []
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (swaps && i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1)
    }
    before = prev
    prev = row
  }
  return prev[b.length]
}

import t from 'tap'
import { join, relative } from 'node:path'
import { InvalidOptionsError } from '../../lib/errors'
import { loadConfigFile } from '../../lib/config/load-file'
import { resolveOptions } from '../../lib/config/resolve'

function catchError (fn: () => unknown): InvalidOptionsError {
  try {
    fn()
  } catch (err) {
    if (err instanceof InvalidOptionsError) return err
    throw err
  }
  throw new Error('expected an InvalidOptionsError')
}

t.test('reads a YAML file', async (t) => {
  const dir = t.testdir({
    'services.yaml': [
      'defaults:',
      '  timeout: { connect: 1000 }',
      'services:',
      '  billing:',
      '    baseUrl: https://billing.internal:8443/api',
      '    retry:',
      '      attempts: 2',
      '      methods: [GET, PUT]',
      '    critical: true'
    ].join('\n')
  })
  t.same(loadConfigFile(join(dir, 'services.yaml'), {}), {
    defaults: { timeout: { connect: 1000 } },
    services: { billing: { baseUrl: 'https://billing.internal:8443/api', retry: { attempts: 2, methods: ['GET', 'PUT'] }, critical: true } }
  })
})

t.test('reads a .yml file and lets anchors share blocks', async (t) => {
  const dir = t.testdir({
    'c.yml': [
      'common: &common',
      '  connections: 8',
      'services:',
      '  a:',
      '    <<: *common',
      '    baseUrl: http://a'
    ].join('\n')
  })
  const config = loadConfigFile(join(dir, 'c.yml'), {}) as { services: { a: unknown } }
  t.same(config.services.a, { connections: 8, baseUrl: 'http://a' })
})

t.test('reads a JSON file', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ closeTimeout: 5, services: { a: { baseUrl: 'http://a' } } }) })
  t.same(loadConfigFile(join(dir, 'c.json'), {}), { closeTimeout: 5, services: { a: { baseUrl: 'http://a' } } })
})

t.test('resolves a relative path against the working directory', async (t) => {
  const dir = t.testdir({ 'c.json': '{"closeTimeout": 1}' })
  t.same(loadConfigFile(relative(process.cwd(), join(dir, 'c.json')), {}), { closeTimeout: 1 })
})

t.test('treats a file with only comments as empty options', async (t) => {
  const dir = t.testdir({ 'c.yaml': '# nothing yet\n' })
  t.same(loadConfigFile(join(dir, 'c.yaml'), {}), {})
})

t.test('interpolates ${NAME} in every string, recursively', async (t) => {
  const dir = t.testdir({
    'c.yaml': [
      'services:',
      '  billing:',
      '    baseUrl: https://${BILLING_HOST}:${BILLING_PORT}/api',
      '    headers:',
      '      x-team: ${TEAM}',
      '    forwardHeaders: ["x-${TEAM}"]'
    ].join('\n')
  })
  const env = { BILLING_HOST: 'billing.internal', BILLING_PORT: '8443', TEAM: 'payments' }
  t.same(loadConfigFile(join(dir, 'c.yaml'), env), {
    services: { billing: { baseUrl: 'https://billing.internal:8443/api', headers: { 'x-team': 'payments' }, forwardHeaders: ['x-payments'] } }
  })
})

t.test('uses ${NAME:-default} when the variable is unset or empty', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ a: '${A:-http://localhost:8080}', b: '${B:-fallback}', c: '${C:-}', d: '${D:-x}' }) })
  t.same(loadConfigFile(join(dir, 'c.json'), { B: '', D: 'set' }), { a: 'http://localhost:8080', b: 'fallback', c: '', d: 'set' })
})

t.test('keeps an empty variable without a default as an empty string', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ a: 'x${EMPTY}y' }) })
  t.same(loadConfigFile(join(dir, 'c.json'), { EMPTY: '' }), { a: 'xy' })
})

t.test('leaves $${NAME} as a literal ${NAME}', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ a: 'cost: $${PRICE} and ${X}' }) })
  t.same(loadConfigFile(join(dir, 'c.json'), { X: '1' }), { a: 'cost: ${PRICE} and 1' })
})

t.test('refuses a variable that is not set, naming it and the key', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'services:\n  billing:\n    baseUrl: ${BILLING_URL}\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.equal(err.message, 'configFile services.billing.baseUrl: environment variable BILLING_URL is not set')
  t.equal(err.key, 'services.billing.baseUrl')
})

t.test('reports every unset variable in one error, each with its keys', async (t) => {
  const dir = t.testdir({
    'c.yaml': [
      'closeTimeout: ${CLOSE}',
      'services:',
      '  billing:',
      '    baseUrl: https://${HOST}:${PORT:-8443}',
      '    headers: { x-team: "${TEAM}" }',
      '  users:',
      '    baseUrl: [http://a, "http://${HOST}"]'
    ].join('\n')
  })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.equal(err.message, 'configFile: 3 environment variables are not set: CLOSE (closeTimeout), ' +
    'HOST (services.billing.baseUrl, services.users.baseUrl[1]), TEAM (services.billing.headers.x-team)')
  t.equal(err.key, 'closeTimeout', 'key is the first one')
})

t.test('one unset variable used in several places is reported once with every key', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ services: { a: { baseUrl: '${URL}' }, b: { baseUrl: '${URL}' } } }) })
  const err = catchError(() => loadConfigFile(join(dir, 'c.json'), {}))
  t.equal(err.message, 'configFile: environment variable is not set: URL (services.a.baseUrl, services.b.baseUrl)')
  t.equal(err.key, 'services.a.baseUrl')
})

for (const k of ['__proto__', 'constructor', 'prototype']) {
  const problem = `the key "${k}" is not allowed ("__proto__", "constructor" and "prototype" are refused anywhere in the options)`
  t.test(`refuses a ${k} key anywhere in a file, naming it (YAML and JSON)`, async (t) => {
    const dir = t.testdir({
      'top.yaml': `${k}:\n  x: 1\nservices:\n  a:\n    baseUrl: http://a\n`,
      'top.json': `{"${k}": {"x": 1}, "services": {"a": {"baseUrl": "http://a"}}}`,
      'nested.yaml': `services:\n  a:\n    baseUrl: http://a\n    retry:\n      ${k}: { attempts: 9 }\n`,
      'nested.json': `{"services": {"a": {"baseUrl": "http://a", "headers": {"${k}": "x"}}}}`,
      'list.yaml': `services:\n  a:\n    baseUrl:\n      - http://a\n      - ${k}: 1\n`
    })
    const expected: Array<[string, string]> = [
      ['top.yaml', k], ['top.json', k], ['nested.yaml', `services.a.retry.${k}`], ['nested.json', `services.a.headers.${k}`],
      ['list.yaml', `services.a.baseUrl[1].${k}`]
    ]
    for (const [file, key] of expected) {
      const err = catchError(() => loadConfigFile(join(dir, file), {}))
      t.equal(err.message, `configFile ${key}: ${problem}`, file)
      t.equal(err.key, key, file)
    }
  })
}

t.test('a file with a top-level __proto__ fails registration instead of giving 0 services', async (t) => {
  const dir = t.testdir({ 'c.yaml': '__proto__:\n  x: 1\nservices:\n  a:\n    baseUrl: http://a\n' })
  const err = catchError(() => resolveOptions({ configFile: join(dir, 'c.yaml') }))
  t.equal(err.key, '__proto__')
})

t.test('an own __proto__ key in the options given beside a file is named too', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'services:\n  a:\n    baseUrl: http://a\n' })
  const options = JSON.parse(`{"configFile": ${JSON.stringify(join(dir, 'c.yaml'))}, "services": {"__proto__": {"b": {"baseUrl": "http://b"}}}}`)
  const err = catchError(() => resolveOptions(options))
  t.equal(err.key, 'services.__proto__')
  t.match(err.message, 'services.__proto__: the key "__proto__" is not allowed')
})

t.test('names list items with their index', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'services:\n  b:\n    baseUrl:\n      - http://a\n      - ${B2}\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.equal(err.message, 'configFile services.b.baseUrl[1]: environment variable B2 is not set')
  t.equal(err.key, 'services.b.baseUrl[1]')
})

t.test('turns a whole-placeholder number or boolean into a number or boolean', async (t) => {
  const dir = t.testdir({
    'c.yaml': [
      'closeTimeout: ${CLOSE}',
      'defaults:',
      '  connections: ${POOL:-16}',
      '  allowH2: ${H2}',
      '  throwHttpErrors: ${THROW}',
      '  keepAliveTimeout: ${KA}',
      '  breaker: { errorPercentage: "${PCT}" }',
      'label: ${NAN}',
      'mixed: ${POOL:-16}ms',
      'hex: ${HEX}',
      'list: ["${POOL:-16}"]'
    ].join('\n')
  })
  const env = { CLOSE: '2500', H2: 'true', THROW: 'false', KA: '1.5e3', PCT: '-12.5', NAN: 'Infinity', HEX: '0x10' }
  t.same(loadConfigFile(join(dir, 'c.yaml'), env), {
    closeTimeout: 2500,
    defaults: { connections: 16, allowH2: true, throwHttpErrors: false, keepAliveTimeout: 1500, breaker: { errorPercentage: -12.5 } },
    label: 'Infinity',
    mixed: '16ms',
    hex: '0x10',
    list: [16]
  })
})

t.test('keeps placeholders under text-only keys as strings', async (t) => {
  const dir = t.testdir({
    'c.yaml': [
      'requestIdHeader: ${H}',
      'defaults:',
      '  headers: { x-api-version: "${V}", x-flag: "${T}" }',
      '  tls: { passphrase: "${P}", servername: "${V}" }',
      '  retry: { methods: ["${V}"] }',
      'services:',
      '  headers:',
      '    baseUrl: ${V}',
      '    connections: ${V}'
    ].join('\n')
  })
  const env = { H: '1', V: '2', T: 'true', P: '1234' }
  t.same(loadConfigFile(join(dir, 'c.yaml'), env), {
    requestIdHeader: '1',
    defaults: { headers: { 'x-api-version': '2', 'x-flag': 'true' }, tls: { passphrase: '1234', servername: '2' }, retry: { methods: ['2'] } },
    services: { headers: { baseUrl: '2', connections: 2 } }
  }, 'a service named "headers" is not a header map')
})

t.test('reads a placeholder as a number under timeout.attempt, and as text under deadlineHeaders.attempt', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'defaults:\n  timeout: { attempt: "${N}" }\n  deadlineHeaders: { attempt: "${N}", remaining: "${N}" }\n' })
  t.same(loadConfigFile(join(dir, 'c.yaml'), { N: '2000' }), {
    defaults: { timeout: { attempt: 2000 }, deadlineHeaders: { attempt: '2000', remaining: '2000' } }
  })
})

t.test('refuses a file that cannot be read', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'missing.yaml')
  const err = catchError(() => loadConfigFile(file, {}))
  t.equal(err.key, 'configFile')
  t.match(err.message, `configFile: cannot read ${file}: ENOENT`)
})

t.test('refuses YAML that does not parse, with the parser message, the line and the column', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'services:\n  a: [unclosed\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.equal(err.key, 'configFile')
  t.equal(err.message, `configFile: cannot parse ${join(dir, 'c.yaml')} at line 3, column 1: ` +
    'Flow sequence in block collection must be sufficiently indented and end with a ]')
})

t.test('a parse error on a line with an unquoted ${…} in a flow map hints at quoting it, and quoting works', async (t) => {
  const dir = t.testdir({
    'bad.yaml': 'services:\n  a:\n    baseUrl: http://a\n    retry: { attempts: ${N:-3} }\n',
    'good.yaml': 'services:\n  a:\n    baseUrl: http://a\n    retry: { attempts: "${N:-3}" }\n'
  })
  const err = catchError(() => loadConfigFile(join(dir, 'bad.yaml'), {}))
  t.equal(err.key, 'configFile')
  t.match(err.message, `configFile: cannot parse ${join(dir, 'bad.yaml')} at line 4, column 25: `)
  t.match(err.message, /\(quote a \$\{…\} placeholder inside \{ … \} or \[ … \]: attempts: "\$\{N:-3\}"; quoted, a number or boolean still becomes one\)$/)
  t.notMatch(err.message, '\n', 'one line, without the parser\'s excerpt of the file')
  t.same(loadConfigFile(join(dir, 'good.yaml'), {}), { services: { a: { baseUrl: 'http://a', retry: { attempts: 3 } } } })
  t.same(loadConfigFile(join(dir, 'good.yaml'), { N: '5' }), { services: { a: { baseUrl: 'http://a', retry: { attempts: 5 } } } })
})

t.test('a parse error elsewhere gives no quoting hint', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'a: ${A}\nb: [1\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.match(err.message, / at line \d+, column \d+: /)
  t.notMatch(err.message, 'quote')
})

t.test('refuses duplicate YAML keys', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'closeTimeout: 1\ncloseTimeout: 2\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.match(err.message, /cannot parse .*unique/is)
})

t.test('refuses JSON that does not parse, with the parser message', async (t) => {
  const dir = t.testdir({ 'c.json': '{"a": 1,}' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.json'), {}))
  t.equal(err.key, 'configFile')
  t.match(err.message, `configFile: cannot parse ${join(dir, 'c.json')} at line 1, column 9: `)
  t.notMatch(err.message, 'position')
})

t.test('a JSON parse error on a line with a bare ${…} hints at making it a string', async (t) => {
  const dir = t.testdir({ 'c.json': '{\n  "closeTimeout": ${CLOSE}\n}\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.json'), {}))
  t.match(err.message, `configFile: cannot parse ${join(dir, 'c.json')} at line 2, column 19: `)
  t.match(err.message, /\(a \$\{…\} placeholder is a JSON string: write "\$\{NAME\}"; quoted, a number or boolean still becomes one\)$/)
})

t.test('refuses a file whose top is not an object', async (t) => {
  const dir = t.testdir({ 'c.yaml': '- a\n- b\n' })
  const err = catchError(() => loadConfigFile(join(dir, 'c.yaml'), {}))
  t.equal(err.message, `configFile: expected an object at the top of ${join(dir, 'c.yaml')}, got ["a","b"]`)
})

t.test('refuses an unknown file type', async (t) => {
  const err = catchError(() => loadConfigFile('config.toml', {}))
  t.equal(err.message, 'configFile: expected a .yaml, .yml or .json file, got "config.toml"')
  t.equal(err.key, 'configFile')
})

t.test('reads the process environment by default', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ a: '${FHS_TEST_VALUE}' }) })
  process.env.FHS_TEST_VALUE = 'from-env'
  t.teardown(() => { delete process.env.FHS_TEST_VALUE })
  t.same(loadConfigFile(join(dir, 'c.json')), { a: 'from-env' })
})

import t from 'tap'
import { createHttpServices, InvalidOptionsError, type HttpServicesOptions } from '../../index'
import { resolveOptions } from '../../lib/config'

/** The message `auth` (as given, for service `api`) is refused with. */
function refusal (auth: unknown, where: 'service' | 'defaults' = 'service'): string {
  const options = where === 'service'
    ? { services: { api: { baseUrl: 'http://127.0.0.1:1', auth } } }
    : { defaults: { auth }, services: { api: { baseUrl: 'http://127.0.0.1:1' } } }
  try {
    resolveOptions(options as HttpServicesOptions)
  } catch (err) {
    if (!(err instanceof InvalidOptionsError)) throw err
    return err.message
  }
  return 'accepted'
}

const oauth2 = { tokenUrl: 'https://idp.example/token', clientId: 'id', clientSecret: 'oauth-secret' }

t.test('each scheme is accepted in a service and in defaults', async (t) => {
  for (const auth of [
    false,
    { bearer: 'tok' },
    { bearer: () => 'tok' },
    { apiKey: { value: 'k' } },
    { apiKey: { value: 'k', header: 'X-Key' } },
    { apiKey: { value: 'k', query: 'api_key' } },
    { basic: { username: 'u', password: '' } },
    { forward: true },
    { forward: 'x-user-token' }
  ]) {
    t.equal(refusal(auth), 'accepted', JSON.stringify(auth))
    t.equal(refusal(auth, 'defaults'), 'accepted', `defaults: ${JSON.stringify(auth)}`)
  }
})

t.test('exactly one scheme, each with precise messages naming the service and key', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{}, 'services.api.auth: expected exactly one of bearer, apiKey, basic, forward, oauth2, got none'],
    [{ bearer: 'a', basic: { username: 'u', password: 'p' } }, 'services.api.auth: expected exactly one of bearer, apiKey, basic, forward, oauth2, got bearer and basic'],
    [true, 'services.api.auth: expected false or an object, got true'],
    [{ beare: 'x' }, 'services.api.auth.beare: unknown option (did you mean "bearer"?)'],
    [{ bearer: 42 }, 'services.api.auth.bearer: expected a non-empty string without CR, LF or NUL, got a number'],
    [{ apiKey: { header: 'x' } }, 'services.api.auth.apiKey.value: expected a non-empty string without CR, LF or NUL, got undefined'],
    [{ apiKey: { value: 'k', header: 'x-k', query: 'k' } }, 'services.api.auth.apiKey.query: give the key either in a header or in the query, not both'],
    [{ apiKey: { value: 'k', header: 'bad header' } }, 'services.api.auth.apiKey.header: expected a header name (an HTTP token), got "bad header"'],
    [{ apiKey: { value: 'k', header: 'Host' } }, 'services.api.auth.apiKey.header: expected a header name other than host, content-length, transfer-encoding, connection, proxy-connection, keep-alive, upgrade, expect, te, trailer, content-type, cookie, got "Host"'],
    [{ basic: { username: 'a:b', password: 'p' } }, 'services.api.auth.basic.username: expected a non-empty string without ":", CR, LF or NUL, got "a:b"'],
    [{ basic: { username: 'u' } }, 'services.api.auth.basic.password: expected a string without CR, LF or NUL, got undefined'],
    [{ forward: false }, 'services.api.auth.forward: expected true or a header name (an HTTP token), got false'],
    [{ forward: 'content-length' }, /^services\.api\.auth\.forward: expected a header name other than host/ as unknown as string],
    [{ oauth2: { ...oauth2, tokenUrl: 'ftp://x' } }, 'services.api.auth.oauth2.tokenUrl: expected an http(s) URL, got "ftp://x"'],
    [{ oauth2: { ...oauth2, tokenUrl: 'https://id:pw@idp/token' } }, 'services.api.auth.oauth2.tokenUrl: expected an http(s) URL without credentials (use clientId and clientSecret), got "***"'],
    [{ oauth2: { ...oauth2, tokenService: 'idp' } }, 'services.api.auth.oauth2.tokenUrl: expected a path starting with "/" (the token request goes through tokenService), got "https://idp.example/token"'],
    [{ oauth2: { ...oauth2, authMethod: 'jwt' } }, 'services.api.auth.oauth2.authMethod: expected one of "basic", "post", got "jwt"'],
    [{ oauth2: { ...oauth2, refreshBefore: -1 } }, 'services.api.auth.oauth2.refreshBefore: expected a number of milliseconds >= 0, got -1'],
    [{ oauth2: { ...oauth2, scope: [] } }, 'services.api.auth.oauth2.scope: expected a non-empty list of scopes, got []'],
    [{ oauth2: { tokenUrl: 'https://idp/t', clientId: 'id' } }, 'services.api.auth.oauth2.clientSecret: expected a non-empty string without CR, LF or NUL, got undefined']
  ]
  for (const [auth, message] of cases) {
    if (typeof message === 'string') t.equal(refusal(auth), message)
    else t.match(refusal(auth), message)
  }
  t.equal(refusal({}, 'defaults'), 'defaults.auth: expected exactly one of bearer, apiKey, basic, forward, oauth2, got none')
})

t.test('a secret given with the wrong type is not echoed: the message shows its kind', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['SECRET-a', 'services.api.auth: expected false or an object, got "***"'],
    [['SECRET-b'], 'services.api.auth: expected false or an object, got a list'],
    [{ apiKey: 'SECRET-c' }, 'services.api.auth.apiKey: expected an object, got "***"'],
    [{ apiKey: ['SECRET-d'] }, 'services.api.auth.apiKey: expected an object, got a list'],
    [{ apiKey: { value: ['SECRET-e'] } }, 'services.api.auth.apiKey.value: expected a non-empty string without CR, LF or NUL, got a list'],
    [{ apiKey: { value: 12345678 } }, 'services.api.auth.apiKey.value: expected a non-empty string without CR, LF or NUL, got a number'],
    [{ basic: 'user:SECRET-f' }, 'services.api.auth.basic: expected an object, got "***"'],
    [{ basic: ['user', 'SECRET-g'] }, 'services.api.auth.basic: expected an object, got a list'],
    [{ basic: { username: 'u', password: ['SECRET-h'] } }, 'services.api.auth.basic.password: expected a string without CR, LF or NUL, got a list'],
    [{ oauth2: 'SECRET-i' }, 'services.api.auth.oauth2: expected an object, got "***"'],
    [{ oauth2: { ...oauth2, clientSecret: { s: 'SECRET-j' } } }, 'services.api.auth.oauth2.clientSecret: expected a non-empty string without CR, LF or NUL, got an object'],
    [{ bearer: ['SECRET-k'] }, 'services.api.auth.bearer: expected a non-empty string without CR, LF or NUL, got a list']
  ]
  for (const [auth, message] of cases) {
    t.equal(refusal(auth), message)
    t.equal(refusal(auth, 'defaults'), message.replace('services.api.', 'defaults.'))
  }
})

t.test('defaults.forwardHeaders cannot forward a credential to every service; a service may', async (t) => {
  for (const [i, name] of [[0, 'Authorization'], [1, 'cookie'], [0, 'proxy-authorization']] as const) {
    const forwardHeaders = i === 0 ? [name] : ['accept-language', name]
    t.throws(() => resolveOptions({ defaults: { forwardHeaders }, services: { api: { baseUrl: 'http://127.0.0.1:1' } } }), {
      code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS',
      message: `defaults.forwardHeaders[${i}]: ${JSON.stringify(name)} is a credential: forward it per service (auth: { forward: true } or the service's own forwardHeaders), not to every service`
    })
  }
  t.doesNotThrow(() => resolveOptions({ services: { api: { baseUrl: 'http://127.0.0.1:1', forwardHeaders: ['cookie'] } } }))
})

t.test('a secret with a control character is refused at start-up, without being shown', async (t) => {
  t.equal(refusal({ bearer: 'SECRET\x01x' }), 'services.api.auth.bearer: expected a string without control characters (tab aside), got "***"')
  t.equal(refusal({ apiKey: { value: 'SECRET\x7f' } }), 'services.api.auth.apiKey.value: expected a string without control characters (tab aside), got "***"')
  t.equal(refusal({ bearer: 'tab\tok' }), 'accepted')
})

t.test('a valid oauth2 object is accepted and resolved with its defaults, the secret not enumerable', async (t) => {
  t.equal(refusal({ oauth2 }), 'accepted')
  const resolved = resolveOptions({
    services: {
      idp: { baseUrl: 'http://127.0.0.1:1' },
      api: { baseUrl: 'http://127.0.0.1:1', auth: { oauth2: { ...oauth2, tokenService: 'idp', tokenUrl: '/token', scope: ['a', 'b'] } } }
    }
  })
  const auth = resolved.services.get('api')?.auth
  t.match(auth?.oauth2, { tokenUrl: '/token', clientId: 'id', scope: 'a b', authMethod: 'basic', refreshBefore: 60000, tokenService: 'idp', extraParams: {} })
  t.notMatch(JSON.stringify(resolved.services.get('api')), /oauth-secret/)
  t.notMatch(require('node:util').inspect(resolved.services.get('api'), { depth: 5 }), /oauth-secret/)
})

t.test('secrets are never echoed in a validation message', async (t) => {
  const secrets: Array<[unknown, string]> = [
    [{ bearer: 'bearer-secret\n' }, 'bearer-secret'],
    [{ apiKey: { value: 'key-secret\r\n' } }, 'key-secret'],
    [{ apiKey: { value: 'key-secret2\n', header: 'x-k' } }, 'key-secret2'],
    [{ basic: { username: 'u', password: 'pw-secret\n' } }, 'pw-secret'],
    [{ oauth2: { ...oauth2, clientSecret: 'client-secret\n' } }, 'client-secret'],
    [{ oauth2: { ...oauth2, extraParams: { client_assertion: 42 } } }, 'never'],
    [{ oauth2: { ...oauth2, clientSecret: 'cs\n', tokenUrl: 'https://idp/t?secret=x' } }, 'cs']
  ]
  for (const [auth, secret] of secrets) {
    const message = refusal(auth)
    t.not(message, 'accepted', message)
    t.notOk(message.includes(secret), `${message} does not show ${secret}`)
  }
})

t.test('the resolved auth keeps its secrets out of JSON and inspect', async (t) => {
  const resolved = resolveOptions({
    services: {
      b: { baseUrl: 'http://127.0.0.1:1', auth: { bearer: 'json-secret' } },
      k: { baseUrl: 'http://127.0.0.1:1', auth: { apiKey: { value: 'json-key', query: 'k' } } },
      f: { baseUrl: 'http://127.0.0.1:1', auth: { forward: 'X-User' }, forwardHeaders: ['x-user', 'x-trace'] }
    }
  })
  const b = resolved.services.get('b')?.auth
  t.same(JSON.parse(JSON.stringify(b)), { scheme: 'bearer', header: 'authorization' })
  t.equal(b?.value, 'Bearer json-secret', 'readable by the policy')
  t.notMatch(require('node:util').inspect(resolved.services.get('b')), /json-secret/)
  t.notMatch(JSON.stringify(resolved.services.get('k')), /json-key/)
  t.same(resolved.services.get('f')?.forwardHeaders, ['x-user', 'x-trace'], 'forward adds its header once to forwardHeaders')
})

t.test('an auth option fails registration through createHttpServices too', async (t) => {
  t.throws(() => createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1', auth: {} } } }), { code: 'HTTP_SERVICES_ERR_INVALID_OPTIONS', key: 'services.api.auth' })
})

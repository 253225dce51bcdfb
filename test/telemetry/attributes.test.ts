import t from 'tap'
import { errorType, fullUrl, methodAttribute, originParts, spanName, templateOf } from '../../lib/telemetry/attributes'

t.test('methods semconv does not know are _OTHER, and name a span HTTP', async (t) => {
  t.equal(methodAttribute('GET'), 'GET')
  t.equal(methodAttribute('QUERY'), 'QUERY')
  t.equal(methodAttribute('PROPFIND'), '_OTHER')
  t.equal(spanName('PROPFIND', undefined), 'HTTP')
  t.equal(spanName('GET', '/users/:id'), 'GET /users/:id')
})

t.test('a route is a template only when params filled its placeholders', async (t) => {
  t.equal(templateOf('/users/:id', '/v1/users/42?x=***'), '/users/:id')
  t.equal(templateOf('/at/:when/x', '/at/noon/x'), '/at/:when/x')
  t.equal(templateOf('/users/42', '/v1/users/42'), undefined)
  t.equal(templateOf('/time/10:30', '/time/10:30'), undefined, 'a colon and a digit is no placeholder')
  t.equal(templateOf('/a:b', '/base/a:b?q=***'), undefined, 'a placeholder left as it is (no params) is a literal path')
})

t.test('url.full never carries userinfo', async (t) => {
  t.equal(fullUrl('http://user:pw@host:8080', '/x?token=***'), 'http://host:8080/x?token=***')
  t.equal(fullUrl('https://host', '/x'), 'https://host/x')
})

t.test('an origin\'s parts: default ports, IPv6 without brackets, nothing for what does not parse', async (t) => {
  t.same(originParts('https://api.example'), { scheme: 'https', address: 'api.example', port: 443 })
  t.same(originParts('http://[::1]:8080'), { scheme: 'http', address: '::1', port: 8080 })
  t.same(originParts('http://10.0.0.7'), { scheme: 'http', address: '10.0.0.7', port: 80 })
  t.equal(originParts('not a url'), undefined)
})

t.test('error.type: the socket code, a timeout\'s phase, the library code, the name, or _OTHER', async (t) => {
  t.equal(errorType({ code: 'HTTP_SERVICES_ERR_CONNECTION', errno: 'ECONNRESET' }), 'ECONNRESET')
  t.equal(errorType({ code: 'HTTP_SERVICES_ERR_TIMEOUT', phase: 'headers' }), 'timeout_headers')
  t.equal(errorType({ code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' }), 'HTTP_SERVICES_ERR_CIRCUIT_OPEN')
  t.equal(errorType(new TypeError('x')), 'TypeError')
  t.equal(errorType('boom'), '_OTHER')
  t.equal(errorType({}), '_OTHER')
})

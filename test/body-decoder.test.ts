import t from 'tap'
import { BodyChunks, asBuffer, bodyJson, bodyText } from '../lib/body-decoder'
import { ResponseParseError } from '../index'

const kBom = Buffer.from([0xef, 0xbb, 0xbf])
const from = { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, meta: { service: 'api', method: 'GET', path: '/x?token=abc' } }
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

function parseError (bytes: Buffer, res = from): ResponseParseError {
  try {
    bodyJson(bytes, res)
  } catch (err) {
    return err as ResponseParseError
  }
  throw new Error('expected a ResponseParseError')
}

t.test('bodyText decodes as WHATWG\'s UTF-8 decode (TextDecoder, undici\'s text()): a leading BOM dropped, invalid sequences as U+FFFD', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['plain text', Buffer.from('héllo 東京 🎉')],
    ['a leading BOM', Buffer.concat([kBom, Buffer.from('{"a":1}')])],
    ['only a BOM', kBom],
    ['two BOMs (the second is text)', Buffer.concat([kBom, kBom, Buffer.from('x')])],
    ['a BOM not at the start (text)', Buffer.concat([Buffer.from('x'), kBom])],
    ['half a BOM', kBom.subarray(0, 2)],
    ['a lone continuation byte', Buffer.from([0x61, 0x80, 0x62])],
    ['a truncated 3-byte sequence', Buffer.from([0x61, 0xe2, 0x82])],
    ['an overlong encoding', Buffer.from([0xc0, 0xaf])],
    ['an encoded surrogate', Buffer.from([0xed, 0xa0, 0x80])],
    ['bytes never valid in UTF-8', Buffer.from([0xf5, 0xfe, 0xff])],
    ['every byte value', allBytes]
  ]
  const decoder = new TextDecoder()
  for (const [name, bytes] of cases) t.equal(bodyText(bytes), decoder.decode(bytes), name)
  t.equal(bodyText(Buffer.from([0x61, 0xff, 0x62])), 'a\ufffdb')
  t.equal(bodyText(Buffer.concat([kBom, Buffer.from('x')])), 'x')
})

t.test('bodyJson parses the text bodyText gives, BOM and all', async (t) => {
  t.same(bodyJson(Buffer.from('{"name":"Zoë"}'), from), { name: 'Zoë' })
  t.same(bodyJson(Buffer.concat([kBom, Buffer.from('[1,2]')]), from), [1, 2], 'a leading BOM is not part of the JSON')
  t.equal(bodyJson(Buffer.from('"a\\u0000"'), from), 'a\u0000')
  t.equal(bodyJson(Buffer.from([0x22, 0x61, 0xff, 0x22]), from), 'a\ufffd', 'an invalid byte in a string becomes U+FFFD')
})

t.test('an empty body, or one that is only a BOM, is undefined; blank or not JSON is a ResponseParseError', async (t) => {
  t.equal(bodyJson(Buffer.alloc(0), from), undefined)
  t.equal(bodyJson(kBom, from), undefined)
  for (const body of [' ', '\r\n', '{"a":', 'undefined', '<html>']) {
    const err = parseError(Buffer.from(body))
    t.ok(err instanceof ResponseParseError, JSON.stringify(body))
    t.match(err, { code: 'HTTP_SERVICES_ERR_RESPONSE_PARSE', statusCode: 502, status: 200, service: 'api', method: 'GET', url: '/x?token=***' })
    t.ok(err.cause instanceof SyntaxError)
  }
})

t.test('a parse error keeps the upstream\'s text out of its message, capped and without control characters', async (t) => {
  const page = '\u001b[31m<html>\r\nsecret\u0000' + 'x'.repeat(500)
  const err = parseError(Buffer.concat([kBom, Buffer.from(page)]), {
    status: 503,
    headers: { 'content-type': 'text/html\r\nx-forged: 1' + 'y'.repeat(200) },
    meta: { service: 'api', method: 'POST', path: '/page' }
  })
  t.equal(err.status, 503)
  t.match(err.message, /^POST api \/page: response 503 is not valid JSON$/)
  t.notMatch(err.message, /secret|html/)
  t.equal(err.snippet.length, 200, 'the snippet is capped at 200 characters')
  t.match(err.snippet, /^<html> secret x+$/, 'no BOM, ANSI escape or control character in it')
  t.equal(err.contentType?.length, 100, 'the content type is capped at 100 characters')
  t.notMatch(err.contentType, /[\r\n]/)
})

t.test('BodyChunks keeps a single chunk as it is and joins several, up to its limit', async (t) => {
  const empty = new BodyChunks(10)
  t.equal(empty.bytes().length, 0, 'no chunk is an empty body')

  const one = new BodyChunks(10)
  const chunk = Buffer.from('abc')
  t.equal(one.add(chunk), true)
  t.equal(one.bytes(), chunk, 'one chunk is not copied')

  const several = new BodyChunks(10)
  t.equal(several.add(Buffer.from('abcd')), true)
  t.equal(several.add(Buffer.from('efghij')), true, 'exactly the limit fits')
  t.equal(several.size, 10)
  t.same(several.bytes(), Buffer.from('abcdefghij'))
  t.equal(several.add(Buffer.from('k')), false, 'one byte more does not')
  t.equal(several.size, 10)
  t.same(several.bytes(), Buffer.from('abcdefghij'), 'the refused chunk is not kept')
})

t.test('asBuffer takes a stream\'s chunk of any kind without copying bytes', async (t) => {
  const buf = Buffer.from('xyz')
  t.equal(asBuffer(buf), buf)
  t.same(asBuffer('é'), Buffer.from('é'), 'a string is UTF-8')
  const bytes = new Uint8Array([1, 2, 3, 4]).subarray(1, 3)
  const view = asBuffer(bytes)
  t.ok(Buffer.isBuffer(view))
  t.same([...view], [2, 3])
  bytes[0] = 9
  t.equal(view[0], 9, 'a Uint8Array is viewed, not copied')
})

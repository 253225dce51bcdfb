import t, { type Test } from 'tap'
import { builtPackage, consumerProject, kProcessTimeout, run } from '../helpers/package'
import { startServer, sendJson } from '../helpers/server'

// A build (when dist/ is stale) and two node processes, each bounded by kProcessTimeout.
t.setTimeout(kProcessTimeout * 3)

// fastify-plugin adds the camel-cased plugin name as a property of the function; the package does not declare it.
const kAddedByFastifyPlugin = 'fastifyHttpServices'

/**
 * An ES module app, as the README writes it: it registers the default import, calls an upstream through a route, and
 * prints what it found. The `require()` of the same package (CommonJS) must give the very same objects.
 */
const esmApp = `import Fastify from 'fastify'
import httpServices, { createHttpServices, TimeoutError, httpServices as named } from 'fastify-http-services'
import * as esm from 'fastify-http-services'
import { mockHttpServices } from 'fastify-http-services/testing'
import * as esmTesting from 'fastify-http-services/testing'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cjs = require('fastify-http-services')
const cjsTesting = require('fastify-http-services/testing')

const app = Fastify()
await app.register(httpServices, { services: { up: { baseUrl: process.argv[2] } } })
app.get('/', async (request) => await request.httpClient('up').getJson('/'))
const answer = await app.inject('/')
await app.close()
const mocks = mockHttpServices()
await mocks.close()
console.log(JSON.stringify({
  status: answer.statusCode,
  body: answer.json(),
  defaultIsRequire: typeof httpServices === 'function' && httpServices === cjs,
  namedIsDefault: named === httpServices && esm.default === httpServices,
  classes: typeof createHttpServices === 'function' && TimeoutError === cjs.TimeoutError,
  // Node 23+ adds a 'module.exports' name to a CommonJS module's ES namespace: not one of ours.
  esmNames: Object.keys(esm).filter((k) => k !== 'default' && k !== 'module.exports').sort(),
  cjsNames: Object.keys(cjs).sort(),
  esmTesting: Object.keys(esmTesting).filter((k) => k !== 'default' && k !== '__esModule' && k !== 'module.exports').sort(),
  cjsTesting: Object.keys(cjsTesting).sort()
}))
`

/** A CommonJS app: `require()` gives the plugin itself, with every export on it. */
const cjsApp = `const Fastify = require('fastify')
const httpServices = require('fastify-http-services')
const { createHttpServices, HttpStatusError } = require('fastify-http-services')
const { mockHttpServices } = require('fastify-http-services/testing')

async function main () {
  const app = Fastify()
  await app.register(httpServices, { services: { up: { baseUrl: process.argv[2] } } })
  app.get('/', async (request) => await request.httpClient('up').getJson('/'))
  const answer = await app.inject('/')
  await app.close()
  console.log(JSON.stringify({
    status: answer.statusCode,
    body: answer.json(),
    plugin: typeof httpServices === 'function' && httpServices.default === httpServices && httpServices.httpServices === httpServices,
    named: typeof createHttpServices === 'function' && typeof HttpStatusError === 'function' && typeof mockHttpServices === 'function'
  }))
}
main().catch((err) => { console.error(err); process.exitCode = 1 })
`

async function upstream (t: Test): Promise<string> {
  const server = await startServer((_req, res) => sendJson(res, 200, { from: 'upstream' }))
  t.teardown(server.close)
  return server.url
}

function lastLine (output: string): Record<string, unknown> {
  const lines = output.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>
}

// One build (when dist/ is stale) for every test of this file, removed at its end.
let pkg = ''
t.before(async () => { pkg = await builtPackage(t) })

t.test('an ES module imports the plugin as its default export, and every export by name', async (t) => {
  const url = await upstream(t)
  const dir = consumerProject(t, pkg, 'module', { 'app.mjs': esmApp })
  const ran = await run(process.execPath, ['app.mjs', url], dir)
  t.equal(ran.code, 0, 'node app.mjs exits cleanly', { output: ran.output })
  if (ran.code !== 0) return
  const seen = lastLine(ran.output)
  t.equal(seen.status, 200)
  t.same(seen.body, { from: 'upstream' }, 'the registered plugin called the upstream')
  t.equal(seen.defaultIsRequire, true, 'the default export is what require() gives: the plugin')
  t.equal(seen.namedIsDefault, true, '`httpServices` and `default` name the plugin too')
  t.equal(seen.classes, true)
  // `default` is both: the ES default export is module.exports itself, which has a `default` property.
  const cjsNames = (seen.cjsNames as string[]).filter((k) => k !== kAddedByFastifyPlugin && k !== 'default')
  t.same(seen.esmNames, cjsNames, 'every property of the CommonJS export is a named ES export (Node finds them all)')
  t.ok(cjsNames.includes('createHttpServices') && cjsNames.includes('TimeoutError'))
  t.same(seen.esmTesting, seen.cjsTesting, 'the testing entry: every export by name')
  t.ok((seen.esmTesting as string[]).includes('mockHttpServices'))
})

t.test('a CommonJS module requires the plugin itself, with every export on it', async (t) => {
  const url = await upstream(t)
  const dir = consumerProject(t, pkg, 'commonjs', { 'app.js': cjsApp })
  const ran = await run(process.execPath, ['app.js', url], dir)
  t.equal(ran.code, 0, 'node app.js exits cleanly', { output: ran.output })
  if (ran.code !== 0) return
  t.same(lastLine(ran.output), { status: 200, body: { from: 'upstream' }, plugin: true, named: true })
})

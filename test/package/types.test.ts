import t from 'tap'
import { builtPackage, consumerProject, kProcessTimeout, typecheck } from '../helpers/package'

// A build and three type checks of a project outside the repository; each process is bounded by kProcessTimeout.
t.setTimeout(kProcessTimeout * 3)

/**
 * What an app writes from the README: the default import registered as a plugin, named imports of the client, the
 * errors and the types, the typed service names, and the Testing section's app (its `Dispatcher` from this package,
 * not from whatever undici the app has). `@ts-expect-error` lines prove the types still refuse mistakes.
 */
function app (style: 'esm' | 'cjs'): string {
  return `import Fastify from 'fastify'
import httpServices, {
  createHttpServices, httpServices as named, HttpClient, HttpResponse, HttpStatusError, TimeoutError, isHttpServicesError,
  type CallOptions, type Dispatcher, type HttpServicesOptions, type Logger, type ServiceOptions, type ServiceStats
} from 'fastify-http-services'
import { mockClient, mockHttpServices, mockResponse, type MockAgent, type MockHttpServices } from 'fastify-http-services/testing'
${style === 'cjs' ? "import required = require('fastify-http-services')\n" : ''}
declare module 'fastify-http-services' {
  interface HttpServiceNames { users: true, billing: true }
}

export function buildApp (dispatcher?: Dispatcher) {
  const app = Fastify()
  app.register(httpServices, {
    dispatcher,
    services: {
      users: { baseUrl: 'http://users.internal', retry: { attempts: 2, baseDelay: 10 } },
      billing: { baseUrl: 'http://billing.internal/api' }
    }
  })
  app.get('/me/invoices', async (request, reply) => {
    const user = await request.httpClient('users').getJson<{ id: number }>('/me')
    // @ts-expect-error: not a service name
    request.httpClient('biling')
    try {
      return await request.httpClient('billing').getJson('/invoices', { query: { user: user.id } })
    } catch (err) {
      if (err instanceof HttpStatusError && err.status === 404) return reply.code(404).send({ error: 'no invoices yet' })
      throw err
    }
  })
  app.get('/raw', async (request) => {
    const res: HttpResponse = await request.httpClient('users').get('/x')
    return res
  })
  return app
}

const options: HttpServicesOptions = { services: { users: { baseUrl: 'http://127.0.0.1:1' } } }
const service: ServiceOptions = { baseUrl: 'http://127.0.0.1:1' }
Fastify().register(httpServices, options)
Fastify().register(httpServices.default, options)
Fastify().register(httpServices.httpServices, options)
Fastify().register(named, { services: { users: service } })
${style === 'cjs' ? 'Fastify().register(required, options)\nFastify().register(required.default, options)\n' : ''}
// @ts-expect-error: baseUrl is a string
Fastify().register(httpServices, { services: { users: { baseUrl: 1 } } })

const mocks: MockHttpServices = mockHttpServices()
buildApp(mocks.dispatcher)
const agent: MockAgent = mocks.agent
const services = createHttpServices({ services: { users: { baseUrl: 'http://127.0.0.1:1' } } })
const client: HttpClient = services.client('users')
const call: CallOptions = { query: { a: 1 }, timeout: 100 }
const response: Promise<HttpResponse> = client.get('/x', call)
const stats: ServiceStats = services.stats().users
const logger: Logger = { debug () {}, info () {}, warn () {}, error () {}, child () { return logger } }
const users = mockClient({ get: { json: { name: 'Ada' } } }, { service: 'users' })
const fake: HttpResponse = mockResponse({ status: 201, json: { id: 8 } })
export function classify (err: unknown): string {
  if (err instanceof TimeoutError) return err.phase
  return isHttpServicesError(err) ? err.code : 'other'
}
export const used = [agent, response, stats, users, fake]
`
}

const strict = { target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] }

// One build (when dist/ is stale) for every test of this file, removed at its end.
let pkg = ''
t.before(async () => { pkg = await builtPackage(t) })

t.test('the README imports type-check in an ES module app (type: module, module NodeNext)', async (t) => {
  const dir = consumerProject(t, pkg, 'module', {
    'tsconfig.json': JSON.stringify({ compilerOptions: { ...strict, module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['app.ts'] }),
    'app.ts': app('esm') + '\nawait Fastify().register(httpServices, options)\n'
  })
  const checked = await typecheck(dir)
  t.equal(checked.code, 0, 'tsc --noEmit passes')
  t.equal(checked.output, '', 'with nothing to say')
})

t.test('the README imports type-check in a CommonJS app (module NodeNext, and the classic commonjs + node10)', async (t) => {
  const dir = consumerProject(t, pkg, 'commonjs', {
    'tsconfig.json': JSON.stringify({ compilerOptions: { ...strict, module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['app.ts'] }),
    // No esModuleInterop: the default import is the plugin's `default` property, as Fastify's own plugins give it.
    'tsconfig.node10.json': JSON.stringify({
      compilerOptions: { ...strict, module: 'CommonJS', moduleResolution: 'node10', esModuleInterop: false }, files: ['app.ts']
    }),
    'app.ts': app('cjs')
  })
  for (const project of ['tsconfig.json', 'tsconfig.node10.json']) {
    const checked = await typecheck(dir, project)
    t.equal(checked.code, 0, `${project}: tsc --noEmit passes`)
    t.equal(checked.output, '', `${project}: with nothing to say`)
  }
})

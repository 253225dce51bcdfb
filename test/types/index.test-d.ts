import { expectAssignable, expectType, expectError } from 'tsd'
import Fastify from 'fastify'
import httpServices, {
  createHttpServices, HttpClient, HttpResponse, type CallTimeoutOptions, type Dispatcher, type HttpServicesOptions
} from '../../index'
import { mockHttpServices, type Dispatcher as TestingDispatcher, type MockAgent } from '../../testing'

const app = Fastify()
app.register(httpServices, { services: { billing: { baseUrl: 'http://127.0.0.1:1' } } })
app.get('/', async (request) => {
  const client = request.httpClient('billing')
  expectType<HttpClient>(client)
  expectType<Promise<HttpResponse>>(client.get('/x'))
  expectType<Promise<{ id: number }>>(client.getJson<{ id: number }>('/x'))
  expectError(client.get('/x', { nope: 1 }))
  // A call sets every timeout phase but `connect`, which is the pool's.
  expectType<Promise<HttpResponse>>(client.get('/x', { timeout: { headers: 100, body: 100, attempt: 50, total: 500 } }))
  expectType<Promise<HttpResponse>>(client.get('/x', { timeout: 500 }))
  expectError(client.get('/x', { timeout: { connect: 100 } }))
  const t: CallTimeoutOptions = { attempt: 10 }
  expectType<Promise<unknown>>(client.postJson('/x', { a: 1 }, { timeout: t }))
})
const services = createHttpServices({ services: { a: { baseUrl: 'http://127.0.0.1:1' } } })
expectType<HttpClient>(services.client('a'))

// undici's types as the package uses them: an app's tests import nothing from undici (whose top-level copy may differ).
const mocks = mockHttpServices()
expectType<MockAgent>(mocks.agent)
expectAssignable<Dispatcher>(mocks.dispatcher)
expectAssignable<HttpServicesOptions>({ dispatcher: mocks.dispatcher, services: {} })
expectAssignable<TestingDispatcher>(mocks.dispatcher)
// The plugin is the module itself, also as `.default` and `.httpServices`.
expectType<typeof httpServices>(httpServices.default)
expectType<typeof httpServices>(httpServices.httpServices)

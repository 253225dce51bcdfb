import { expectType, expectError } from 'tsd'
import Fastify from 'fastify'
import httpServices, { createHttpServices, HttpClient, HttpResponse } from '../../index'

const app = Fastify()
app.register(httpServices, { services: { billing: { baseUrl: 'http://127.0.0.1:1' } } })
app.get('/', async (request) => {
  const client = request.httpClient('billing')
  expectType<HttpClient>(client)
  expectType<Promise<HttpResponse>>(client.get('/x'))
  expectType<Promise<{ id: number }>>(client.getJson<{ id: number }>('/x'))
  expectError(client.get('/x', { nope: 1 }))
})
const services = createHttpServices({ services: { a: { baseUrl: 'http://127.0.0.1:1' } } })
expectType<HttpClient>(services.client('a'))

import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

async function setup (t: tap.Test) {
  const server = await startServer((_req, res, seen) => sendJson(res, 200, { url: seen.url }))
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: server.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  const api = services.client('api')
  const urlOf = async (path: string, options?: Parameters<typeof api.get>[1]): Promise<string> =>
    (await api.getJson<{ url: string }>(path, options)).url
  return { server, api, urlOf }
}

t.test('query values are percent-encoded, arrays repeat the key, undefined and null are dropped', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/search', {
    query: { q: 'a b&c=d/é?#', tag: ['x', 'y z'], n: 0, f: false, gone: undefined, nil: null, empty: '' }
  }), '/search?q=a%20b%26c%3Dd%2F%C3%A9%3F%23&tag=x&tag=y%20z&n=0&f=false&empty=')
})

t.test('a query object whose values are all dropped adds no "?"', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/search', { query: { a: undefined } }), '/search')
  t.equal(await urlOf('/search', { query: {} }), '/search')
})

t.test('query is appended to a path that already has a query string', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/search?fixed=1', { query: { q: 'x' } }), '/search?fixed=1&q=x')
})

t.test('query accepts URLSearchParams', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/s', { query: new URLSearchParams({ a: '1 2', b: 'ü' }) }), '/s?a=1+2&b=%C3%BC')
})

t.test('params fill :name placeholders, percent-encoded (slashes included)', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/users/:id/files/:name', { params: { id: 42, name: 'a/b c?.txt' } }),
    '/users/42/files/a%2Fb%20c%3F.txt')
  t.equal(await urlOf('/users/:user_id', { params: { user_id: 'ü' }, query: { x: '1' } }), '/users/%C3%BC?x=1')
})

t.test('a placeholder missing from params rejects with InvalidRequestError before any connection', async (t) => {
  const { api, server } = await setup(t)
  await t.rejects(api.get('/users/:id', { params: { other: 1 } }), { code: 'HTTP_SERVICES_ERR_INVALID_REQUEST', message: /needs params\.id/ })
  t.equal(server.requests.length, 0)
})

t.test('a fragment is never sent', async (t) => {
  const { urlOf } = await setup(t)
  t.equal(await urlOf('/page#section'), '/page')
})

t.test('a path with spaces or non-ASCII characters is refused: values belong in query or params', async (t) => {
  const { api, server } = await setup(t)
  await t.rejects(api.get('/a b'), { code: 'HTTP_SERVICES_ERR_FORBIDDEN_URL' })
  await t.rejects(api.get('/é'), { code: 'HTTP_SERVICES_ERR_FORBIDDEN_URL' })
  t.equal(server.requests.length, 0)
})

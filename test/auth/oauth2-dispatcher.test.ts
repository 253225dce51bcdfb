import t from 'tap'
import { MockAgent } from 'undici'
import { createHttpServices } from '../../index'

t.test('an injected dispatcher (MockAgent) serves the token request too: no pool of its own, no network', async (t) => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(async () => { await agent.close() })
  const forms: string[] = []
  agent.get('http://idp.test').intercept({ path: '/oauth/token', method: 'POST' })
    .reply(200, (opts) => { forms.push(String(opts.body)); return { access_token: 'mocked', token_type: 'Bearer', expires_in: 3600 } })
  agent.get('http://api.test').intercept({ path: '/r', method: 'GET', headers: { authorization: 'Bearer mocked' } }).reply(200, { ok: true }).times(2)
  const registry = createHttpServices({
    dispatcher: agent,
    services: { api: { baseUrl: 'http://api.test', auth: { oauth2: { tokenUrl: 'http://idp.test/oauth/token', clientId: 'c', clientSecret: 's' } } } }
  })
  t.teardown(async () => { await registry.close() })
  await registry.open()
  t.same(await registry.client('api').getJson('/r'), { ok: true })
  t.same(await registry.client('api').getJson('/r'), { ok: true })
  t.same(forms, ['grant_type=client_credentials'], 'one token request, through the mock')
  agent.assertNoPendingInterceptors()
})

import t from 'tap'
import { createHttpServices } from '../../index'
import { sendJson, startServer } from '../helpers/server'

// The round robin moves on with every call, so a retry that took "the next upstream" from it could land where its own
// attempt just failed whenever other calls are in flight (issue 18, section 5).

t.test('concurrent calls: each retry goes to an upstream other than the one its own previous attempt failed on', async (t) => {
  const failing = await startServer((_req, res) => sendJson(res, 503, { server: 'failing' }))
  const healthy = await startServer((_req, res) => sendJson(res, 200, { server: 'healthy' }))
  const services = createHttpServices({
    services: {
      api: {
        baseUrl: [failing.url, healthy.url],
        throwHttpErrors: false,
        retry: { attempts: 2, baseDelay: 1, maxDelay: 5, budget: false },
        // The breakers must stay closed: only the choice of the retry's upstream is under test.
        breaker: { minimumRequests: 1000, errorPercentage: 99 }
      }
    }
  })
  await services.open()
  t.teardown(async () => { await services.close(); await failing.close(); await healthy.close() })
  const api = services.client('api')

  const n = 10
  const answers = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const res = await api.get(`/x?call=${i}`)
    const body = await res.json<{ server: string }>()
    return { status: res.status, server: body.server, attempts: res.attempts }
  }))
  t.same(answers.map((a) => a.status), Array(n).fill(200), 'every call ended on the healthy upstream')
  const onFailing = new Map<string, number>()
  for (const r of failing.requests) onFailing.set(r.url, (onFailing.get(r.url) ?? 0) + 1)
  t.ok(onFailing.size >= n / 2 - 1, `the round robin sent a share of the first attempts to the failing upstream (${onFailing.size})`)
  const twice = [...onFailing].filter(([, count]) => count > 1).map(([url]) => url)
  t.same(twice, [], 'no call went back to the upstream its previous attempt failed on')
  for (const [url] of onFailing) {
    const i = Number(new URL(url, 'http://x').searchParams.get('call'))
    t.equal(answers[i].attempts, 2, `${url}: one failed attempt, then the retry on the other upstream`)
  }
  const stats = services.stats().api.breaker as { upstreams: Record<string, { state: string }> }
  t.equal(stats.upstreams[failing.url].state, 'closed', 'the failing upstream\'s breaker stayed closed')
})

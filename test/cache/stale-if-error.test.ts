import t from 'tap'
import { CircuitOpenError, ConnectionError } from '../../index'
import { startServer, type TestServer } from '../helpers/server'
import { fakeDateClock, openRegistry, recordingLogger } from './helpers'

/** An upstream whose answers are fresh for 10 s (dated by the fake clock); `/fail` answers 500. */
async function upstreamServer (t: Parameters<typeof fakeDateClock>[0]): Promise<TestServer> {
  const server = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    if (req.url === '/fail') {
      res.statusCode = 500
      res.end('down')
      return
    }
    res.setHeader('cache-control', 'max-age=10')
    res.end('stored')
  })
  t.teardown(server.close)
  return server
}

t.test('staleIfError: with the upstream down, a stale entry within the window is served and logged at warn', async (t) => {
  const clock = fakeDateClock(t)
  const upstream = await upstreamServer(t)
  const { warnings, logger } = recordingLogger()
  const services = await openRegistry(t, {
    logger,
    services: {
      kept: { baseUrl: upstream.url, retry: false, cache: { staleIfError: 60_000 } },
      plain: { baseUrl: upstream.url, retry: false, cache: true }
    }
  })
  t.equal(await (await services.client('kept').get('/x')).text(), 'stored')
  t.equal(await (await services.client('plain').get('/x')).text(), 'stored')
  await upstream.close()
  clock.advance(30_000)

  const res = await services.client('kept').get('/x')
  t.equal(res.cache, 'stale')
  t.equal(await res.text(), 'stored')
  const line = warnings.find((w) => w.msg === 'served a stale cached response: the upstream failed')
  t.ok(line, 'a warn line says so')
  t.match(line?.obj, { path: '/x' })
  await t.rejects(services.client('plain').get('/x'), ConnectionError, 'without staleIfError the failure is the answer')

  clock.advance(60_000)
  await t.rejects(services.client('kept').get('/x'), ConnectionError, 'past the window the failure is the answer')
})

t.test('staleIfError: an open breaker serves the stale entry without reaching the upstream', async (t) => {
  const clock = fakeDateClock(t)
  const upstream = await upstreamServer(t)
  const services = await openRegistry(t, {
    services: {
      s: {
        baseUrl: upstream.url,
        retry: false,
        throwHttpErrors: false,
        breaker: { minimumRequests: 1, resetAfter: 600_000 },
        cache: { staleIfError: 60_000 }
      }
    }
  })
  const client = services.client('s')
  t.equal(await (await client.get('/x')).text(), 'stored')
  // One success and two failures: above the 50 % the breaker opens at.
  for (let i = 0; i < 2; i++) await (await client.get('/fail')).text()
  await t.rejects(client.get('/fail'), CircuitOpenError, 'the breaker is open')
  const seen = upstream.requests.length
  clock.advance(30_000)
  const res = await client.get('/x')
  t.equal(res.cache, 'stale')
  t.equal(await res.text(), 'stored')
  t.equal(upstream.requests.length, seen, 'nothing reached the upstream')
})

t.test('a 5xx answer to a revalidation serves the stale entry; must-revalidate forbids it', async (t) => {
  const clock = fakeDateClock(t)
  let failing = false
  const upstream = await startServer((req, res) => {
    res.setHeader('date', new Date(Date.now()).toUTCString())
    if (failing) {
      res.statusCode = 503
      res.end('busy')
      return
    }
    res.setHeader('cache-control', req.url === '/strict' ? 'max-age=10, must-revalidate' : 'max-age=10, stale-if-error=60')
    res.end('stored')
  })
  t.teardown(upstream.close)
  const services = await openRegistry(t, { services: { s: { baseUrl: upstream.url, retry: false, throwHttpErrors: false, cache: true } } })
  const client = services.client('s')
  await (await client.get('/x')).text()
  await (await client.get('/strict')).text()
  failing = true
  clock.advance(30_000)
  const res = await client.get('/x')
  t.equal(res.cache, 'stale', "the response's own stale-if-error directive")
  t.equal(await res.text(), 'stored')
  const strict = await client.get('/strict')
  t.equal(strict.cache, 'miss')
  t.equal(strict.status, 503)
  await strict.text()
})

t.test('a hit takes no rate-limit permit, bulkhead slot or breaker attempt', async (t) => {
  const upstream = await upstreamServer(t)
  const services = await openRegistry(t, {
    services: {
      s: {
        baseUrl: upstream.url,
        cache: true,
        rateLimit: { limit: 1, window: 600_000, maxWait: 0 },
        bulkhead: { maxConcurrent: 1 }
      }
    }
  })
  const client = services.client('s')
  t.equal(await (await client.get('/x')).text(), 'stored')
  const hits = await Promise.all(Array.from({ length: 20 }, async () => await client.get('/x')))
  t.same(new Set(hits.map((r) => r.cache)), new Set(['hit']), 'twenty at once, over both limits')
  t.equal(upstream.requests.length, 1)
  t.equal(services.stats().s.attempts, 1)
})

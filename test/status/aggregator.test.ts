import t, { type Test } from 'tap'
import { createHttpServices } from '../../index'
import { breakerState, callChannel, cacheServed, hedgeFired, retryRefused, retryScheduled } from '../../lib/diagnostics/channels'
import { StatusAggregator } from '../../lib/status/aggregator'
import { bucketBound, bucketOf, kBuckets, quantile } from '../../lib/status/latency-buckets'
import { Counter, RollingWindow, kSlots } from '../../lib/status/rolling-window'
import { sendJson, startServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

/** True percentile of sorted values, nearest rank. */
const exact = (sorted: number[], q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]

t.test('latency buckets: each duration lands in the bucket whose bounds hold it', async (t) => {
  t.equal(bucketOf(0), 0)
  t.equal(bucketOf(0.25), 0)
  t.equal(bucketOf(1e9), kBuckets - 1, 'past the last bound: the last bucket')
  for (const ms of [0.3, 1, 3.7, 10, 99.9, 250, 1234, 60_000]) {
    const i = bucketOf(ms)
    t.ok(ms <= bucketBound(i) && (i === 0 || ms > bucketBound(i - 1)), `${ms} ms in (${bucketBound(i - 1)}, ${bucketBound(i)}]`)
  }
  for (let i = 0; i < kBuckets - 1; i++) t.equal(bucketOf(bucketBound(i)), i, `bound ${i} is in its own bucket`)
})

t.test('percentiles from the histogram are within a bucket of the true ones', async (t) => {
  const window = new RollingWindow()
  window.clear(0)
  const values: number[] = []
  // A skewed mix: most calls fast, a tail of slow ones.
  for (let i = 0; i < 2000; i++) values.push(i % 50 === 0 ? 800 + i / 10 : 2 + (i % 97) / 10)
  for (const v of values) window.call(500, v, false)
  const sorted = [...values].sort((a, b) => a - b)
  const s = window.summary(999)
  for (const [q, got] of [[0.5, s.p50], [0.99, s.p99]] as const) {
    const want = exact(sorted, q)
    t.ok(got !== null && Math.abs(got - want) / want <= 0.25, `p${q * 100}: ${got} vs true ${want}`)
  }
  t.equal(s.counts[Counter.Calls], 2000)
  t.equal(quantile(new Uint32Array(kBuckets), 0, 0, 0.5), null, 'no values: null')
})

t.test('the window rolls: a second leaves it 60 s later, and a reused slot starts empty', async (t) => {
  const window = new RollingWindow()
  window.clear(0)
  window.call(0, 5, false)
  window.call(500, 5, true)
  window.count(700, Counter.Retries)
  window.call(30_500, 100, false)
  let s = window.summary(30_900)
  t.equal(s.counts[Counter.Calls], 3)
  t.equal(s.counts[Counter.Errors], 1)
  t.equal(s.counts[Counter.Retries], 1)
  t.equal(s.series.requests.length, kSlots)
  t.equal(s.series.requests[kSlots - 30], 2, 'second 0 sits 30 places from the end of the series (the current second is left out)')
  t.equal(s.series.errors[kSlots - 30], 1)
  t.ok(Math.abs(s.seconds - 30.9) < 1e-9, 'it covers the time since it started')

  s = window.summary(60_100)
  t.equal(s.counts[Counter.Calls], 1, 'second 0 left the window at 60 s')
  t.equal(s.counts[Counter.Retries], 0)
  t.ok(Math.abs(s.seconds - 59.1) < 1e-9, 'a full window: seconds 1 to 60, so 59.1 s as of 60.1 s')
  window.call(60_200, 7, false)
  s = window.summary(60_300)
  t.equal(s.counts[Counter.Calls], 2, 'slot 0 reused for second 60: only its own call')
  t.ok(s.p50 !== null && s.p50 <= 8, 'the old latencies went with it')

  s = window.summary(200_000)
  t.equal(s.counts[Counter.Calls], 0, 'a quiet minute later: nothing')
  t.same(s.series.requests.filter((n) => n > 0), [])
  t.equal(s.p99, null)
})

t.test('fixed memory: the window holds the same bytes however many calls it counts', async (t) => {
  const window = new RollingWindow()
  window.clear(0)
  const before = window.byteLength
  t.ok(before < 20_000, `about 17 KB per service (${before} bytes)`)
  let now = 0
  for (let i = 0; i < 200_000; i++) {
    now += 1.7 // 340 s of calls: every slot reused several times
    window.call(now, i % 1000, i % 7 === 0)
    if (i % 3 === 0) window.count(now, Counter.CacheLookups)
  }
  t.equal(window.byteLength, before)
  const s = window.summary(now)
  t.ok(s.counts[Counter.Calls] > 34_000 && s.counts[Counter.Calls] <= 36_000, `the last minute only (${s.counts[Counter.Calls]} calls)`)
})

/** A registry on a real upstream: `/ok`, `/fail` (500), `/slow` (first request 2 s: hedged after 400 ms), `/cached` (max-age 60). */
async function registryOn (t: Test) {
  let slowSeen = 0
  const server = await startServer(async (_req, res, seen) => {
    if (seen.url.startsWith('/fail')) return sendJson(res, 500, { error: true })
    if (seen.url.startsWith('/slow') && slowSeen++ === 0) await new Promise((resolve) => setTimeout(resolve, 2000))
    sendJson(res, 200, { ok: true }, seen.url.startsWith('/cached') ? { 'cache-control': 'max-age=60' } : {})
  })
  t.teardown(async () => await server.close())
  const services = createHttpServices({
    services: {
      api: { baseUrl: server.url, breaker: false, retry: { attempts: 1, baseDelay: 1, budget: false }, hedge: { delay: 400 }, cache: true },
      other: { baseUrl: server.url, retry: false, fallback: () => ({ fallback: true }) }
    }
  })
  await services.open()
  t.teardown(async () => await services.close())
  return services
}

t.test('counts the calls, failures, retries, hedges, fallbacks and cache hits of its own registry only', async (t) => {
  const services = await registryOn(t)
  const elsewhere = await registryOn(t)
  const aggregator = new StatusAggregator(services)
  t.teardown(() => aggregator.close())
  t.notOk(aggregator.subscribed)
  aggregator.read()
  t.ok(aggregator.subscribed)
  const api = services.client('api')
  for (let i = 0; i < 5; i++) await api.getJson('/ok')
  await t.rejects(api.getJson('/fail'), { name: 'HttpStatusError' })
  await api.getJson('/slow')
  await api.getJson('/cached')
  await api.getJson('/cached')
  t.same(await services.client('other').getJson('/fail'), { fallback: true })
  await elsewhere.client('api').getJson('/ok')
  await t.rejects(elsewhere.client('api').getJson('/fail'))

  const s = aggregator.window('api')?.summary(aggregator.now())
  t.ok(s !== undefined)
  t.equal(s?.counts[Counter.Calls], 9, 'five ok, one failed, one slow, two cached')
  t.equal(s?.counts[Counter.Errors], 1)
  t.equal(s?.counts[Counter.Retries], 1, 'the 500 was retried once')
  t.equal(s?.counts[Counter.Hedges], 1, 'the slow call was hedged')
  t.equal(s?.counts[Counter.CacheLookups], 9, 'every GET of a cached service goes through the cache')
  t.equal(s?.counts[Counter.CacheHits], 1, 'the second /cached was a hit')
  t.ok((s?.p99 ?? 0) >= 300, `the hedged call's latency shows in p99 (${s?.p99} ms)`)
  const other = aggregator.window('other')?.summary(aggregator.now())
  t.equal(other?.counts[Counter.Fallbacks], 1)
  t.equal(other?.counts[Counter.Calls], 1)
  t.equal(other?.counts[Counter.Errors], 0, 'a call its fallback answered did not fail')
})

t.test('retries the budget refuses are counted apart', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  t.teardown(async () => await server.close())
  const services = createHttpServices({
    services: { api: { baseUrl: server.url, breaker: false, retry: { attempts: 1, baseDelay: 1, budget: { ratio: 0.01, minPerSecond: 0.1 } } } }
  })
  await services.open()
  t.teardown(async () => await services.close())
  const aggregator = new StatusAggregator(services)
  t.teardown(() => aggregator.close())
  aggregator.read()
  for (let i = 0; i < 6; i++) await t.rejects(services.client('api').getJson('/'))
  const s = aggregator.window('api')?.summary(aggregator.now())
  const refused = s?.counts[Counter.BudgetRefused] ?? 0
  t.ok(refused >= 4, `most retries refused by the budget (${refused})`)
  t.equal((s?.counts[Counter.Retries] ?? 0) + refused, 6, 'each failure either retried or refused')
})

t.test('subscribes only while read or watched, and unsubscribes once idle', async (t) => {
  let clock = 1000
  const services = createHttpServices({ services: { api: { baseUrl: 'http://127.0.0.1:1' } } })
  const aggregator = new StatusAggregator(services, { now: () => clock, idleAfter: 60_000, tickEvery: 60_000 })
  t.teardown(() => aggregator.close())
  const channels = [callChannel.asyncEnd, retryScheduled, retryRefused, hedgeFired, cacheServed, breakerState]
  t.notOk(channels.some((c) => c.hasSubscribers), 'nothing subscribed before anyone looks')
  aggregator.read()
  t.ok(channels.every((c) => c.hasSubscribers), 'a JSON read subscribes')
  clock += 59_000
  aggregator.tick()
  t.ok(aggregator.subscribed, 'still counting within a minute of the read')
  clock += 1000
  aggregator.tick()
  t.notOk(aggregator.subscribed, 'a minute after the last read, with no watcher: unsubscribed')
  t.notOk(channels.some((c) => c.hasSubscribers))

  let ticks = 0
  const unwatch = aggregator.watch(() => { ticks++ })
  t.ok(aggregator.subscribed)
  clock += 600_000
  aggregator.tick()
  t.equal(ticks, 1, 'a watcher is told on each tick')
  t.ok(aggregator.subscribed, 'a watcher keeps it subscribed however long')
  unwatch()
  unwatch()
  clock += 30_000
  aggregator.tick()
  t.ok(aggregator.subscribed, 'a minute of grace after the last watcher left')
  clock += 30_000
  aggregator.tick()
  t.notOk(aggregator.subscribed)
  t.equal(ticks, 1)
  aggregator.watch(() => { throw new Error('a broken watcher') })
  aggregator.tick()
  aggregator.close()
  t.notOk(aggregator.subscribed, 'close unsubscribes')
  aggregator.read()
  t.notOk(aggregator.subscribed, 'and for good')
})

t.test('a breaker changing state tells the watchers at once', async (t) => {
  const server = await startServer((_req, res) => sendJson(res, 503, {}))
  t.teardown(async () => await server.close())
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, breaker: { minimumRequests: 2, resetAfter: 60_000 } } } })
  await services.open()
  t.teardown(async () => await services.close())
  const aggregator = new StatusAggregator(services, { tickEvery: 60_000 })
  t.teardown(() => aggregator.close())
  let told = 0
  aggregator.watch(() => { told++ })
  for (let i = 0; i < 2; i++) await t.rejects(services.client('api').getJson('/'))
  await waitUntil('the watcher was told of the opening', () => told > 0, 2000)
  t.equal((services.stats().api.breaker as { state: string }).state, 'open')
})

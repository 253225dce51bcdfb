import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { Agent, request } from 'undici'
import { interopBinary, startRedis, type RedisServer } from '../helpers/interop'
import { startServer } from '../helpers/server'

const redisBinary = interopBinary(t, 'redis-server', 'redis-server')
const kFixture = join(__dirname, 'fixtures', 'instance.ts')
/** Longest wait for a child to start (tsx compiles the app first; a loaded CI machine is slow at it). */
const kStartLimit = 30_000

interface Instance {
  /** `http://127.0.0.1:<port>` */
  url: string
}

/** An app instance in a child process of its own; killed in teardown. */
async function startInstance (t: Test, env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', kFixture], {
    cwd: join(__dirname, '..', '..'),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  const exited = new Promise<void>((resolve) => { child.once('exit', () => resolve()) })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the instance did not listen within ${kStartLimit} ms:\n${output}`)), kStartLimit)
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const m = /listening (\d+)/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    })
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`the instance exited before listening:\n${output}`))
    })
  })
  return { url: `http://127.0.0.1:${port}` }
}

/** Polls `check` every 50 ms until it holds; fails after `limit` ms with `what`. */
async function eventually (what: string, check: () => Promise<boolean>, limit = 15_000): Promise<void> {
  const until = performance.now() + limit
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`timed out after ${limit} ms waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('two app instances in separate processes share one Redis', { skip: redisBinary.skip, timeout: 180_000 }, async (t) => {
  let redis: RedisServer = await startRedis(t, redisBinary.path as string)
  const counts = new Map<string, number>()
  /** When the upstream saw each rate-limited request (`performance.now()`). */
  const limitedAt: number[] = []
  let fragileStatus = 200
  let asideVersion = 0
  const upstream = await startServer((req, res) => {
    const path = (req.url as string).split('?')[0]
    const key = path.startsWith('/cached/') ? path : path.startsWith('/aside/') ? '/aside' : path
    counts.set(key, (counts.get(key) ?? 0) + 1)
    if (path === '/limited') limitedAt.push(performance.now())
    res.setHeader('content-type', 'application/json')
    if (path.startsWith('/cached/')) {
      res.setHeader('cache-control', 'max-age=60')
      res.end(JSON.stringify({ path }))
    } else if (path.startsWith('/aside/')) {
      res.end(JSON.stringify({ version: ++asideVersion }))
    } else if (path === '/fragile') {
      res.statusCode = fragileStatus
      res.end('{}')
    } else {
      res.end('{}')
    }
  })
  t.teardown(upstream.close)
  const count = (key: string): number => counts.get(key) ?? 0

  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.close())
  const get = async (i: Instance, path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number, body: any }> => {
    const res = await request(`${i.url}${path}`, { method, dispatcher: agent, headersTimeout: 20_000, bodyTimeout: 20_000 })
    return { status: res.statusCode, body: await res.body.json() }
  }
  const stats = async (i: Instance): Promise<any> => (await get(i, '/stats')).body
  const look = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  look.on('error', () => {})
  t.teardown(() => look.disconnect())
  await look.connect()

  const env = { REDIS_URL: redis.url, UPSTREAM_URL: upstream.url }
  const [a, b] = await Promise.all([startInstance(t, env), startInstance(t, env)])

  await t.test('a response cached by one is a hit in the other', async (t) => {
    const first = await get(a, '/cached/1')
    t.match(first, { status: 200, body: { cache: 'miss', body: { path: '/cached/1' } } })
    await eventually('the response is stored in Redis', async () => (await look.exists(`fhs:cache:cached:GET:${upstream.url}/cached/1`)) === 1)
    t.match(await get(b, '/cached/1'), { status: 200, body: { cache: 'hit', body: { path: '/cached/1' } } })
    t.equal(count('/cached/1'), 1, 'the upstream answered once')
  })

  await t.test('a cache-aside invalidation by one is seen by the other', async (t) => {
    t.same((await get(a, '/aside/k')).body, { version: 1 })
    t.same((await get(b, '/aside/k')).body, { version: 1 }, 'the value one fetched')
    t.equal(count('/aside'), 1)
    t.equal((await get(a, '/aside/k/invalidate', 'POST')).status, 200)
    t.same((await get(b, '/aside/k')).body, { version: 2 }, 'fetched again after the invalidation')
    t.same((await get(a, '/aside/k')).body, { version: 2 })
    t.equal(count('/aside'), 2)
  })

  await t.test('together they stay within one rate limit', async (t) => {
    // 50 a second with a burst of 5, hammered by both for 2 s (4 callers each; refusals are fast 503s).
    const start = performance.now()
    const end = start + 2000
    const statuses = new Map<number, number>()
    const hammer = async (i: Instance): Promise<void> => {
      while (performance.now() < end) {
        const { status } = await get(i, '/limited')
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
      }
    }
    await Promise.all([a, a, a, a, b, b, b, b].map(hammer))
    // The limit's allowance over the span the upstream saw requests in: the burst at once, then 50 a second. (Measured
    // there, not around the hammering: the first calls' connections and the last ones' way back are not the limit's.)
    const span = (limitedAt[limitedAt.length - 1] - limitedAt[0]) / 1000
    t.ok(span > 1.5, `the upstream saw requests over ${span.toFixed(2)} s`)
    const allowance = 5 + 50 * span
    const passed = count('/limited')
    t.ok((statuses.get(503) ?? 0) > 0, `calls past the limit were refused (${statuses.get(503) ?? 0})`)
    t.equal(statuses.get(200), passed, 'every call that passed reached the upstream')
    t.ok(Math.abs(passed - allowance) <= allowance * 0.05,
      `the upstream saw ${passed} requests: within 5 % of one limit's ${allowance.toFixed(1)} (two local limits would allow twice that)`)
  })

  await t.test('an outage seen by one opens the other\'s breaker', async (t) => {
    fragileStatus = 503
    for (let i = 0; i < 2; i++) t.match(await get(a, '/fragile'), { status: 200, body: { status: 503 } })
    t.equal((await stats(a)).fragile.breaker.state, 'open')
    await eventually('the other instance\'s breaker opened', async () => (await stats(b)).fragile.breaker.state === 'open')
    const before = count('/fragile')
    const refused = await get(b, '/fragile')
    t.match(refused, { status: 503, body: { code: 'HTTP_SERVICES_ERR_CIRCUIT_OPEN' } }, 'fails fast with the breaker-open error')
    t.equal(count('/fragile'), before, 'without reaching the upstream')
  })

  await t.test('Redis stopped: requests still succeed; shared state recovers when it returns', async (t) => {
    await redis.stop()
    t.match(await get(a, '/cached/2'), { status: 200, body: { cache: 'miss' } }, 'the cache is bypassed')
    t.match(await get(b, '/cached/2'), { status: 200, body: { cache: 'miss' } })
    t.same((await get(b, '/aside/other')).body, { version: 3 }, 'cache-aside fetches')
    t.match(await get(a, '/limited'), { status: 200 }, 'the rate limit is local')
    const down = await stats(a)
    t.match(down.limited, { rateLimit: { shared: 'local' } })
    t.not(down.limited.redis.connection, 'connected', `the connection is ${down.limited.redis.connection as string}`)
    await eventually('the other instance\'s breaker subscription is down', async () => (await stats(b)).fragile.redis.breaker === 'unsubscribed')

    redis = await startRedis(t, redisBinary.path as string, redis.port)
    await look.ping().catch(() => {})
    await eventually('both instances are back on Redis', async () => {
      const [sa, sb] = await Promise.all([stats(a), stats(b)])
      await Promise.all([get(a, '/limited'), get(b, '/limited')])
      return [sa, sb].every((s) => s.limited.rateLimit.shared === 'redis' && s.fragile.redis.breaker === 'subscribed' &&
        s.cached.redis.connection === 'connected')
    }, 20_000)
    t.match(await get(a, '/cached/3'), { status: 200, body: { cache: 'miss' } })
    await eventually('the response is stored in Redis again', async () => (await look.exists(`fhs:cache:cached:GET:${upstream.url}/cached/3`).catch(() => 0)) === 1)
    t.match(await get(b, '/cached/3'), { status: 200, body: { cache: 'hit' } }, 'cached by one, a hit in the other again')
  })
})

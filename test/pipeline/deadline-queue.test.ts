import t from 'tap'
import { createHttpServices, TimeoutError } from '../../index'
import { DeadlineQueue, DeadlineSignal } from '../../lib/pipeline/deadline-queue'
import { CallSignal } from '../../lib/call-signal'
import { startServer } from '../helpers/server'

t.test('a service total timeout aborts an unread body at the deadline, and spares calls that ended', async (t) => {
  const s = await startServer((req, res) => {
    if (req.url === '/fast') { res.end('fast'); return }
    res.writeHead(200)
    res.write('partial') // and never ends
  })
  const services = createHttpServices({ defaults: { retry: false }, services: { api: { baseUrl: s.url, timeout: { total: 1000 } } } })
  await services.open()
  t.teardown(async () => { await services.close(); await s.close() })
  const api = services.client('api')
  const fast = await Promise.all([api.get('/fast'), api.get('/fast'), api.get('/fast')])
  for (const res of fast) t.equal(await res.text(), 'fast')
  const trickle = await api.get('/trickle')
  const t0 = Date.now()
  const err = await trickle.text().then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof TimeoutError)
  t.match(err, { phase: 'total', timeout: 1000, method: 'GET', url: '/trickle', service: 'api' })
  t.ok(Date.now() - t0 < 3000, 'aborted near its deadline')
  const again = await api.get('/fast')
  t.equal(await again.text(), 'fast', 'later calls are unaffected')
  t.equal(services.stats().api.failures, 0)
})

t.test('the queue aborts what is still in flight, in deadline order, never early, and forgets settled calls', async (t) => {
  const expired: string[] = []
  const queue = new DeadlineQueue((s) => { expired.push(s.path); return new Error(s.path) })
  t.teardown(() => queue.clear())
  const now = performance.now()
  const a = new DeadlineSignal(now + 30, 'GET', '/a')
  const b = new DeadlineSignal(now + 30, 'GET', '/b')
  const c = new DeadlineSignal(now + 120, 'GET', '/c')
  const seen: string[] = []
  a.once('abort', () => seen.push(`a at ${Math.round(performance.now() - now)}`))
  c.once('abort', () => seen.push(`c at ${Math.round(performance.now() - now)}`))
  const bodyListener = (): void => {}
  b.once('abort', bodyListener)
  for (const s of [a, b, c]) queue.add(s)
  t.equal(queue.size, 3)
  b.settle(queue)
  t.equal(queue.size, 3, 'settled, but its body is still guarded')
  b.removeListener('abort', bodyListener)
  t.equal(queue.size, 2, 'its body closed: the call is over and leaves the queue')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(expired, ['/a', '/c'])
  t.equal(seen.length, 2)
  t.ok(Number(seen[0].split(' at ')[1]) >= 29, 'a not before its deadline')
  t.ok(Number(seen[1].split(' at ')[1]) >= 119, 'c not before its deadline')
  t.ok(a.aborted && c.aborted && !b.aborted)
  t.equal(queue.size, 0)
})

t.test('clear() stops the timer and drops every queued signal unaborted', async (t) => {
  const queue = new DeadlineQueue(() => new Error('x'))
  const s = new DeadlineSignal(performance.now() + 60_000, 'GET', '/x')
  s.once('abort', () => t.fail('never aborted'))
  queue.add(s)
  queue.clear()
  t.equal(queue.size, 0)
})

t.test('a call on the per-call chain of a service without a total timeout arms no timer', async (t) => {
  const s = await startServer((_req, res) => { res.end('ok') })
  const services = createHttpServices({ services: { api: { baseUrl: s.url } } })
  await services.open()
  t.teardown(async () => { await services.close(); await s.close() })
  const warnings: string[] = []
  const onWarning = (w: Error): void => { warnings.push(w.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const res = await services.client('api').get('/', { retry: 1 })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(await res.text(), 'ok')
  t.same(warnings, [], 'no TimeoutOverflowWarning: nothing was armed for an infinite deadline')
})

t.test('finished calls leave no listener on a long-lived parent signal', async (t) => {
  const queue = new DeadlineQueue(() => new Error('x'))
  t.teardown(() => queue.clear())
  const parent = new CallSignal()
  for (let i = 0; i < 50; i++) {
    const s = new DeadlineSignal(performance.now() + 60_000, 'GET', '/')
    s.follow(parent)
    queue.add(s)
    const body = (): void => {}
    s.once('abort', body)
    s.settle(queue)
    s.removeListener('abort', body)
  }
  t.equal(queue.size, 0)
  t.notOk(parent.listening, 'every follower unlinked itself')
})

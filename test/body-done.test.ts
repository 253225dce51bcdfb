import { getEventListeners } from 'node:events'
import t from 'tap'
import { createHttpServices, type CallOptions } from '../index'
import { startServer } from './helpers/server'

/**
 * Records the timers of 5 s set from now on: the call guards of these tests (undici's own are shorter, and the
 * service's one unread-body timer is of `timeout.body`, 30 s).
 */
function watchTimers (t: tap.Test): () => number {
  const real = globalThis.setTimeout
  const made: NodeJS.Timeout[] = []
  globalThis.setTimeout = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const timer = real(fn, ms, ...args)
    if (ms === 5000) made.push(timer)
    return timer
  }) as typeof setTimeout
  t.teardown(() => { globalThis.setTimeout = real })
  // A timer that was cleared (or fired) is destroyed.
  return () => made.filter((timer) => (timer as unknown as { _destroyed: boolean })._destroyed !== true).length
}

/**
 * Responses that can hold no body (HEAD, 204, 304, content-length 0) emit no 'close' until someone reads them:
 * what guards a call's body (attempt timeout, the call's own total timeout, the caller's signal) must end with the
 * response, not wait for a 'close' that never comes.
 */
async function setup (t: tap.Test, service: Record<string, unknown>) {
  const server = await startServer((req, res) => {
    if (req.url === '/204') res.writeHead(204).end()
    else if (req.url === '/304') res.writeHead(304).end()
    else if (req.url === '/empty') res.writeHead(200, { 'content-length': '0' }).end()
    else if (req.url === '/json') res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    else res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' }).end(req.method === 'HEAD' ? undefined : 'hello')
  })
  const services = createHttpServices({ services: { api: { baseUrl: server.url, retry: false, ...service } } })
  await services.open()
  t.teardown(async () => { await services.close(); await server.close() })
  return services.client('api')
}

/** A body read to its end closes on a later tick. */
const closed = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 10))

const bodiless: Array<[method: 'head' | 'get', path: string]> = [['head', '/'], ['get', '/204'], ['get', '/304'], ['get', '/empty']]

for (const [name, service, options] of [
  // The service's own attempt limit goes through a queue with one timer (the signal test below covers it).
  ['a call\'s own attempt timeout', {}, { timeout: { attempt: 5000 } }],
  ['a call\'s own total timeout', {}, { timeout: 5000 }]
] as Array<[string, Record<string, unknown>, CallOptions | undefined]>) {
  t.test(`${name} stops its timer with a response that has no body, unread`, async (t) => {
    const api = await setup(t, service)
    const pending = watchTimers(t)
    for (const [method, path] of bodiless) {
      const res = await api[method](path, options)
      t.equal(pending(), 0, `${method.toUpperCase()} ${path} (${res.status}) left no timer`)
    }
    const res = await api.get('/', options)
    t.equal(pending(), 1, 'a body not read yet is still guarded')
    t.equal(await res.text(), 'hello')
    await closed()
    t.equal(pending(), 0, 'and no longer once read')
  })
}

// A policy puts a signal of its own in the call's place (the total timeout's, an attempt's): the one linked to the
// caller's is still the one let go of.
for (const [name, service] of [
  ['', {}],
  [' (under the service\'s attempt timeout)', { timeout: { attempt: 5000 } }],
  [' (under the service\'s total timeout)', { timeout: { total: 5000 } }]
] as const) {
t.test(`the caller's signal keeps no listener after a response that has no body, unread${name}`, async (t) => {
  const api = await setup(t, service)
  for (const [method, path] of bodiless) {
    const controller = new AbortController()
    const res = await api[method](path, { signal: controller.signal })
    t.equal(getEventListeners(controller.signal, 'abort').length, 0, `${method.toUpperCase()} ${path} (${res.status})`)
  }
  const controller = new AbortController()
  const res = await api.get('/', { signal: controller.signal })
  t.equal(getEventListeners(controller.signal, 'abort').length, 1, 'a body not read yet still follows the caller\'s signal')
  await res.text()
  await closed()
  t.equal(getEventListeners(controller.signal, 'abort').length, 0)
  // One signal for many calls (an inbound request's): a *Json call lets go of it as it settles.
  for (let i = 0; i < 3; i++) t.same(await api.getJson('/json', { signal: controller.signal }), { ok: true })
  t.equal(getEventListeners(controller.signal, 'abort').length, 0, 'no listener per *Json call')
})
}

import t from 'tap'
import { CallSignal } from '../../lib/call-signal'
import { ClientClosedError } from '../../lib/errors'
import { backoffDelay, sleep } from '../../lib/pipeline/backoff'
import type { CallContext } from '../../lib/pipeline/types'

t.test('the backoff grows by factor from baseDelay and stops at maxDelay', async (t) => {
  t.same([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, 500, 2, 30000, 'none')), [500, 1000, 2000, 4000, 8000, 16000, 30000])
  t.same([1, 2, 3].map((n) => backoffDelay(n, 100, 3, 1000, 'none')), [100, 300, 900])
})

t.test('full jitter draws in [0, delay], equal jitter in [delay / 2, delay]', async (t) => {
  const full = Array.from({ length: 500 }, () => backoffDelay(3, 100, 2, 30000, 'full'))
  const equal = Array.from({ length: 500 }, () => backoffDelay(3, 100, 2, 30000, 'equal'))
  t.ok(full.every((d) => d >= 0 && d <= 400), 'full jitter stays within the delay')
  t.ok(Math.min(...full) < 100 && Math.max(...full) > 300, 'and spreads over all of it')
  t.ok(equal.every((d) => d >= 200 && d <= 400), 'equal jitter keeps half the delay')
  t.ok(new Set(equal).size > 10, 'and randomises the other half')
})

/** The parts of a call `sleep` reads. */
function call (signal?: CallSignal, closing?: CallSignal): CallContext {
  return { signal, service: { name: 'api', closing }, method: 'GET', path: '/x' } as unknown as CallContext
}

t.test('sleep waits, and rejects at once with the reason when its signal aborts', async (t) => {
  await sleep(1, call())
  const signal = new CallSignal()
  const slept = sleep(60000, call(signal))
  const reason = new Error('gone')
  setTimeout(() => signal.abort(reason), 5)
  await t.rejects(slept, reason)
  await t.rejects(sleep(10, call(signal)), reason, 'an aborted signal rejects straight away')
  const open = new CallSignal()
  await sleep(1, call(open))
  t.pass('a sleep that ends leaves its signal usable')
  open.abort(reason)
})

t.test('sleep ends with ClientClosedError when its service closes, leaving no timer', async (t) => {
  const closing = new CallSignal()
  const signal = new CallSignal()
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  const before = timers()
  const slept = sleep(60000, call(signal, closing))
  t.equal(timers(), before + 1)
  closing.abort(new ClientClosedError('api: service client closed'))
  await t.rejects(slept, { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED', service: 'api', method: 'GET', message: /GET api \/x: service client closed/ })
  t.equal(timers(), before, 'the timer was cleared')
  t.notOk(signal.listening, 'the call\'s signal has no listener left')
  await t.rejects(sleep(10, call(undefined, closing)), { code: 'HTTP_SERVICES_ERR_CLIENT_CLOSED' }, 'a closed service rejects straight away')
})

import t from 'tap'
import { DeadlineQueue, DeadlineSignal } from '../../lib/pipeline/deadline-queue'

/** `Timeout` handles the process counts as keeping it alive. */
const activeTimeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

/** Runs `fn` and returns the timers it created with `setTimeout`. */
function timersOf (fn: () => void): NodeJS.Timeout[] {
  const created: NodeJS.Timeout[] = []
  const real = globalThis.setTimeout
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    const timer = real(...args)
    created.push(timer)
    return timer
  }) as typeof setTimeout
  try {
    fn()
  } finally {
    globalThis.setTimeout = real
  }
  return created
}

t.test('clear() stops the queue\'s timer: no timer is left pending', async (t) => {
  const queue = new DeadlineQueue(() => new Error('expired'))
  const signal = new DeadlineSignal(performance.now() + 60_000, 'GET', '/x')
  const timers = timersOf(() => queue.add(signal))
  t.equal(timers.length, 1, 'the first signal armed one timer')
  const [timer] = timers
  t.teardown(() => clearTimeout(timer))
  // The queue's timer is unref'd, so the process does not list it: ref it to see whether it is still pending.
  const before = activeTimeouts()
  timer.ref()
  t.equal(activeTimeouts(), before + 1, 'while queued, the timer is pending')
  timer.unref()

  queue.clear()
  timer.ref()
  const after = activeTimeouts()
  timer.unref()
  t.equal(after, before, 'after clear() the timer is no longer pending')
  t.equal(queue.size, 0)
  t.notOk(signal.aborted)
})

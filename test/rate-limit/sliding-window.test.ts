import t from 'tap'
import { SlidingWindow } from '../../lib/rate-limit'

/** The most permit times that fall within any span of `window` ms. */
function busiestWindow (times: number[], window: number): number {
  let most = 0
  for (const start of times) most = Math.max(most, times.filter((x) => x >= start && x < start + window).length)
  return most
}

t.test('gives limit permits per window and tells when the oldest leaves it', async (t) => {
  const w = new SlidingWindow({ limit: 3, window: 1000 })
  t.same([w.acquire(0, 0), w.acquire(100, 0), w.acquire(200, 0)], [0, 0, 0])
  t.equal(w.acquire(300, 0), 700, 'full until the permit of t=0 leaves the window')
  t.equal(w.acquire(1000, 0), 0)
  t.equal(w.acquire(1050, 0), 50)
  t.match(w.stats(1050), { available: 0, limit: 3, rate: 3, interval: 1000 })
  t.match(w.stats(1250), { available: 2 })
})

t.test('no span of a window ever holds more than limit permits, reservations included', async (t) => {
  const w = new SlidingWindow({ limit: 4, window: 100 })
  const granted: number[] = []
  for (let now = 0; now < 1000; now += 7) {
    const wait = w.acquire(now, 150)
    if (wait <= 150) granted.push(now + wait)
  }
  t.ok(granted.length >= 36, `${granted.length} permits over ~1 s`)
  t.equal(busiestWindow(granted, 100), 4)
})

t.test('setFactor stretches the window', async (t) => {
  const w = new SlidingWindow({ limit: 2, window: 100 })
  w.setFactor(0.5)
  w.acquire(0, 0)
  w.acquire(0, 0)
  t.equal(w.acquire(0, 0), 200, 'half the rate: 2 per 200 ms')
  t.match(w.stats(0), { rate: 1, interval: 100 })
})

t.test('reset empties the window and undoes setFactor', async (t) => {
  const w = new SlidingWindow({ limit: 2, window: 1000 })
  w.setFactor(0.5)
  t.same([w.acquire(0, 0), w.acquire(0, 0), w.acquire(0, 0)], [0, 0, 2000])
  w.reset()
  t.match(w.stats(0), { available: 2, rate: 2, interval: 1000 })
  t.same([w.acquire(0, 0), w.acquire(0, 0), w.acquire(0, 0)], [0, 0, 1000])
})

import t from 'tap'
import { TokenBucket } from '../../lib/rate-limit'

t.test('a full bucket gives burst permits at once, then one per rate/interval', async (t) => {
  const b = new TokenBucket({ rate: 10, interval: 1000, burst: 3 })
  t.same([b.acquire(0, 0), b.acquire(0, 0), b.acquire(0, 0)], [0, 0, 0], 'the burst')
  t.equal(b.acquire(0, 0), 100, 'empty: the next token is 100 ms away, and none was taken')
  t.equal(b.acquire(50, 0), 50, 'half a token later, 50 ms to go')
  t.equal(b.acquire(100, 0), 0, 'one token refilled')
  t.equal(b.acquire(100, 0), 100)
})

t.test('waiters reserve tokens ahead, in order, never faster than the rate', async (t) => {
  const b = new TokenBucket({ rate: 10, interval: 1000, burst: 1 })
  t.equal(b.acquire(0, 1000), 0)
  t.equal(b.acquire(0, 1000), 100, 'first waiter: 100 ms')
  t.equal(b.acquire(0, 1000), 200, 'second waiter queues behind it')
  t.equal(b.acquire(0, 250), 300, 'a wait past maxWait is refused')
  t.equal(b.acquire(0, 1000), 300, '...and took nothing: the next waiter still gets 300 ms')
  t.equal(b.acquire(1000, 0), 0, 'the debt is repaid by the refill; the bucket fills again up to burst')
  t.equal(b.acquire(1000, 0), 100)
})

t.test('never holds more than burst after a long quiet period', async (t) => {
  const b = new TokenBucket({ rate: 5, interval: 100, burst: 2 })
  b.acquire(0, 0)
  t.match(b.stats(1e6), { available: 2, rate: 5, interval: 100, burst: 2 })
})

t.test('setFactor scales the rate and the burst', async (t) => {
  const b = new TokenBucket({ rate: 10, interval: 1000, burst: 4 })
  b.setFactor(0.5, 0)
  t.match(b.stats(0), { available: 2, rate: 5, burst: 2 })
  b.acquire(0, 0)
  b.acquire(0, 0)
  t.equal(b.acquire(0, 0), 200, 'a token every 200 ms at half rate')
  b.setFactor(1, 0)
  t.equal(b.acquire(0, 0), 100)
})

t.test('reset refills the bucket at the configured rate and burst', async (t) => {
  const b = new TokenBucket({ rate: 10, interval: 1000, burst: 2 })
  b.setFactor(0.5, 0)
  b.acquire(0, 0)
  t.equal(b.acquire(0, 1000), 200, 'empty, at half the rate')
  b.reset()
  t.match(b.stats(0), { available: 2, rate: 10, burst: 2 })
  t.same([b.acquire(0, 0), b.acquire(0, 0), b.acquire(0, 0)], [0, 0, 100])
})

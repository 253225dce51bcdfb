import t from 'tap'
import { AdaptiveRateLimiter, TokenBucket, createRateLimiter } from '../../lib/rate-limit'

function limiter (options = { floor: 0.1, ceiling: 1, increase: 0.05 }): AdaptiveRateLimiter {
  return new AdaptiveRateLimiter(new TokenBucket({ rate: 100, interval: 1000, burst: 100 }), options)
}

t.test('a 429 halves the rate, down to the floor', async (t) => {
  const l = limiter()
  l.onResponse(429, 0, 10)
  t.match(l.stats(10), { rate: 50, factor: 0.5, decreases: 1 })
  l.onResponse(429, 20, 30)
  t.match(l.stats(30), { rate: 25 })
  for (let i = 0; i < 10; i++) l.onResponse(429, 100 + i, 101 + i)
  t.match(l.stats(200), { factor: 0.1 }, 'never below the floor')
  t.equal(Math.round(l.stats(200).rate), 10)
})

t.test('the 429s of requests sent before the last decrease count once', async (t) => {
  const l = limiter()
  l.onResponse(429, 0, 50)
  l.onResponse(429, 10, 55)
  l.onResponse(429, 49, 60)
  t.match(l.stats(60), { factor: 0.5, decreases: 1 }, 'a burst sent at the old rate halves it once')
  l.onResponse(429, 50, 70)
  t.match(l.stats(70), { factor: 0.25 }, 'a request sent at the new rate halves it again')
})

t.test('successes add the rate back additively, up to the ceiling; other statuses leave it', async (t) => {
  const l = limiter({ floor: 0.1, ceiling: 0.8, increase: 0.1 })
  t.match(l.stats(0), { factor: 0.8 }, 'starts at the ceiling when it is below the configured rate')
  l.onResponse(429, 0, 0)
  t.match(l.stats(0), { factor: 0.4 })
  l.onResponse(200, 1, 1)
  l.onResponse(204, 1, 1)
  t.equal(Math.round(l.stats(1).factor * 100), 60)
  l.onResponse(500, 1, 1)
  l.onResponse(404, 1, 1)
  t.equal(Math.round(l.stats(1).factor * 100), 60, '4xx and 5xx other than 429 change nothing')
  for (let i = 0; i < 10; i++) l.onResponse(200, 2, 2)
  t.match(l.stats(2), { factor: 0.8, rate: 80 })
})

t.test('createRateLimiter builds what the options describe', async (t) => {
  const bucket = createRateLimiter({ kind: 'token-bucket', rate: 5, interval: 1000, burst: 2, maxWait: 0, adaptive: undefined })
  t.match(bucket.stats(0), { available: 2, rate: 5 })
  const window = createRateLimiter({ kind: 'sliding-window', rate: 3, interval: 500, burst: 3, maxWait: 0, adaptive: { floor: 0.1, ceiling: 1, increase: 0.05 } })
  t.ok(window instanceof AdaptiveRateLimiter)
  t.match(window.stats(0), { available: 3, rate: 3, limit: 3, factor: 1 })
})

t.test('reset brings the adaptive rate back to its start and forgets its decreases', async (t) => {
  const l = limiter()
  l.onResponse(429, 0, 10)
  l.onResponse(429, 20, 30)
  t.match(l.stats(30), { rate: 25, factor: 0.25, decreases: 2 })
  l.reset()
  t.match(l.stats(30), { rate: 100, factor: 1, decreases: 0, available: 100 })
  l.onResponse(429, 0, 40)
  t.match(l.stats(40), { factor: 0.5, decreases: 1 }, 'a 429 sent before the old decrease counts again after a reset')
  const floored = new AdaptiveRateLimiter(new TokenBucket({ rate: 100, interval: 1000, burst: 100 }), { floor: 2, ceiling: 4, increase: 1 })
  floored.onResponse(200, 0, 1)
  t.match(floored.stats(1), { factor: 3 })
  floored.reset()
  t.match(floored.stats(1), { factor: 2, rate: 200 }, 'back to the floor it starts at')
})

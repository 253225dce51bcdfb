/** How long a test waits for something it expects before failing with a message, unless told otherwise. */
export const kWaitLimit = 5000

/**
 * Resolves once `check()` holds, polling every `every` ms; rejects after `limit` ms with an error naming `what`, so a
 * test that waits for something fails fast with a message instead of hanging until tap's timeout. Its timers are
 * cleared either way.
 */
export async function waitUntil (what: string, check: () => boolean, limit = kWaitLimit, every = 5): Promise<void> {
  if (check()) return
  const start = performance.now()
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      let ok: boolean
      try {
        ok = check()
      } catch (err) {
        clearInterval(timer)
        reject(err)
        return
      }
      if (ok) {
        clearInterval(timer)
        resolve()
      } else if (performance.now() - start >= limit) {
        clearInterval(timer)
        reject(new Error(`timed out after ${limit} ms waiting until ${what}`))
      }
    }, every)
  })
}

/**
 * Settles as `promise` does, or rejects after `limit` ms with an error naming `what`. The timer is cleared once the
 * promise settles.
 */
export async function within<T> (what: string, promise: Promise<T>, limit = kWaitLimit): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms waiting until ${what}`)), limit)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The registry's Redis connection (the `redis` option): ioredis loaded only when the option is given, a connection
 * the library opened closed on close (a client given to it never), keys prefixed, and every command on a call's path
 * bounded by a short timeout and bypassed on failure, so Redis trouble never breaks a request.
 */
import { invalid } from '../config/checkers'
import type { RedisClient, ResolvedRedis } from '../config/options/redis'

/** What the connection logs with: the registry's logger (declared narrow here, so the pipeline's types can name this module). */
interface WarnLogger {
  warn: (obj: object, msg?: string) => void
}

/** How often Redis trouble is logged at most (the first failure, then at most one line per this many ms). */
const kWarnEvery = 10_000
/** Longest wait for the connection in `open()` (the app starts without Redis past it). */
const kConnectWait = 2000
/** Longest wait for a command off the call path (a store write, after the caller has its response). */
export const kBackgroundTimeout = 1000

type RedisConstructor = new (url: string, options: Record<string, unknown>) => RedisClient & {
  connect: () => Promise<void>
  disconnect: () => void
  on: (event: string, fn: (err: Error) => void) => unknown
}

/**
 * ioredis's constructor; throws `InvalidOptionsError` naming the option when the package is not installed. (`name`
 * for the test of that message.)
 */
export function loadIoredis (name = 'ioredis'): RedisConstructor {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(name) as { default?: RedisConstructor } & RedisConstructor
    return mod.default ?? mod
  } catch (err) {
    if ((err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err
    throw invalid('redis', `needs the ${name} package, which is not installed: npm install ${name}`)
  }
}

export class RedisConnection {
  readonly client: RedisClient
  /** Prefix of every key (`keyPrefix`). */
  readonly prefix: string
  /** Longest wait for one command on a call's path, in ms. */
  readonly timeout: number
  /** `true` when the library opened the connection: it closes it. */
  readonly owned: boolean
  private readonly log: WarnLogger
  private lastWarn = -Infinity
  private suppressed = 0

  constructor (options: ResolvedRedis, log: WarnLogger) {
    this.prefix = options.keyPrefix
    this.timeout = options.timeout
    this.log = log
    if (options.client !== undefined) {
      this.client = options.client
      this.owned = false
    } else {
      const Redis = loadIoredis()
      // Connected in open(), not here: a registry that is never opened leaves no socket. No offline queue: a command
      // sent while Redis is away fails at once (and is bypassed) instead of waiting for a reconnection.
      const client = new Redis(options.url as string, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
      client.on('error', (err) => { this.warn('connection', err) })
      this.client = client
      this.owned = true
    }
  }

  /**
   * Connects a connection the library owns, waiting for it at most `kConnectWait` ms; a failure is logged, never
   * thrown: calls bypass Redis until it is there (ioredis keeps reconnecting).
   */
  async open (): Promise<void> {
    if (!this.owned || this.client.status !== 'wait') return
    const connecting = (this.client as unknown as { connect: () => Promise<void> }).connect()
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => { timer = setTimeout(resolve, kConnectWait) })
    await Promise.race([connecting, waited]).catch((err: unknown) => { this.warn('connect', err) })
    clearTimeout(timer)
    connecting.catch(() => {})
  }

  /** Closes a connection the library owns (QUIT, or a plain disconnect when it is not connected); a given one is left. */
  async close (): Promise<void> {
    if (!this.owned) return
    const client = this.client as unknown as { quit: () => Promise<unknown>, disconnect: () => void, status: string }
    // Closed already (a second close): ioredis's disconnect would arm a 2 s timer on the ended socket that nothing clears.
    if (client.status === 'end') return
    if (client.status === 'ready') {
      try {
        await client.quit()
        return
      } catch {}
    }
    client.disconnect()
  }

  /**
   * The connection as `stats()` shows it: `connected` (ready for commands), `connecting` (not yet, or not asked to:
   * a registry not opened), `reconnecting` (lost; ioredis tries again), `closed`.
   */
  get state (): 'connected' | 'connecting' | 'reconnecting' | 'closed' {
    switch (this.client.status) {
      case 'ready': return 'connected'
      case 'reconnecting': return 'reconnecting'
      case 'close':
      case 'end': return 'closed'
      default: return 'connecting'
    }
  }

  /** `key` with the prefix. */
  key (key: string): string {
    return this.prefix + key
  }

  /**
   * Runs a command with the call-path timeout (or `timeout`): resolves with its result, or `undefined` (logged, rate-limited) when it
   * fails or takes longer than `timeout`. Never rejects.
   */
  bounded<T> (what: string, run: () => Promise<T>, timeout = this.timeout): Promise<T | undefined> {
    return new Promise((resolve) => {
      let done = false
      const timer = setTimeout(() => {
        done = true
        this.warn(what, new Error(`no answer within ${timeout} ms`))
        resolve(undefined)
      }, timeout)
      let pending: Promise<T>
      try {
        pending = run()
      } catch (err) {
        pending = Promise.reject(err)
      }
      pending.then((value) => {
        if (done) return
        clearTimeout(timer)
        resolve(value)
      }, (err: unknown) => {
        if (done) return
        clearTimeout(timer)
        this.warn(what, err)
        resolve(undefined)
      })
    })
  }

  /** Logs Redis trouble at warn: the first, then at most one line every 10 s, counting those left out. */
  warn (what: string, err: unknown): void {
    const now = Date.now()
    if (now - this.lastWarn < kWarnEvery) {
      this.suppressed++
      return
    }
    this.lastWarn = now
    const suppressed = this.suppressed
    this.suppressed = 0
    const message = err instanceof Error ? err.message : String(err)
    this.log.warn({ redis: what, err: message, suppressed }, 'redis unavailable: bypassed (calls go on without it)')
  }
}

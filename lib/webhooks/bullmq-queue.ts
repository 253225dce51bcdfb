/**
 * The durable webhook queue: each event is a BullMQ job in the registry's Redis, so it survives a restart and one
 * instance at a time attempts it (BullMQ's job lock). BullMQ gives the delayed jobs, the retries, the lock and the
 * failed set; written here is only what maps the schedule and the sender's semantics onto them:
 *
 * - one queue per registry, `webhooks` under the `redis` keyPrefix (`fhs:webhooks:…`), one Worker per process
 *   (`kConcurrency` attempts at once); job id = `jobIdOf(webhook-id)` (the same id twice is one delivery); job data =
 *   service,
 *   path, type, body (the exact bytes signed afresh at each attempt: the secret stays in the service's config) and
 *   every attempt's outcome;
 * - attempts = the schedule's length, the first delayed by `schedule[0]`, the next ones by a custom backoff
 *   (`schedule[n]`, a `Retry-After` within the schedule's bounds); 3xx / 4xx / 410 stop (UnrecoverableError);
 * - dead letters = the failed set (kept: `removeOnFail: false`); completed jobs are kept a day, so a repeated id is
 *   recognized; a 410 sets `<keyPrefix>webhook-disabled:<service>` until `enable()` deletes it.
 *
 * BullMQ needs connections of its own (no command retry limit, an offline queue, a blocking one per Worker and per
 * QueueEvents): they are new ones from the `redis` URL or `duplicate()`s of the given client, closed on close. The
 * Queue (add, getJob, retry) and the disabled flag use one that fails fast instead (no offline queue, no resend): a
 * command that timed out for its caller must not run when Redis comes back (a send rejected 503 then delivered).
 */
import type { Job, Queue, QueueEvents, Worker } from 'bullmq'
import { invalid } from '../config/checkers'
import type { ResolvedWebhook } from '../config/options/webhook'
import { ClientClosedError, HttpServicesError, InvalidRequestError, type WebhookAttempt, type WebhookDeliveryFailure } from '../errors'
import { kBackgroundTimeout, loadIoredis, type RedisConnection } from '../redis/connection'
import { settleWithin } from '../settle-within'
import type { DeadLetter } from './dead-letters'
import { attemptOnce, deliveryError, disabledError, letterOf, nextWait, noLetter, type Prepared, type SenderRegistry } from './delivery'
import type { PendingWebhook, WebhookDelivered, WebhookQueue, WebhookReceipt, WebhookStats } from './queue'

/** Attempts this process's worker makes at once (each is one HTTP request; the service's pool bounds them too). */
export const kConcurrency = 8
/** Longest wait for Redis in `send`, `replay`, `enable`, `deadLetters`: past it they reject (503). */
const kRedisWait = 5000
/** How often `sendAndWait` looks at its jobs besides the queue's events (which miss what ends before they connect). */
const kPollEvery = 1000
/** Completed jobs are kept this long (s), so the same id sent again within it is recognized as delivered. */
const kKeepDelivered = 24 * 3600
/** How long the queue's events wait on Redis per read, in ms. */
const kEventsBlock = 2000
/** Longest wait for each step of `close()` past the attempts in flight, in ms. */
const kCloseStep = 1000
/** How long a job this process cannot attempt (a service it does not know) waits before another try, in ms. */
const kUnknownServiceWait = 60_000
/** The longest wait between two reconnection attempts of BullMQ's connections (ioredis's default backoff's cap). */
const kMaxRetryDelay = 2000

/** Generated ids (`msg_` and base64url) are job ids as they are; any other is `wh-` and its base64url. */
const kRawId = /^msg_[A-Za-z0-9_-]+$/
const kEncoded = 'wh-'

/**
 * The BullMQ job id of a webhook id, the one mapping used wherever a job is made or looked up. BullMQ refuses ids that
 * are integers or hold ':', and an id naming one of its keys (`failed`, `delayed`…) would collide with it: only
 * `msg_…` ids pass as they are; the others are `wh-` + base64url (never starting `msg_`, so the mapping is one-to-one).
 */
export function jobIdOf (webhookId: string): string {
  return kRawId.test(webhookId) ? webhookId : kEncoded + Buffer.from(webhookId, 'utf8').toString('base64url')
}

/** The webhook id of a job id made by `jobIdOf`. */
export function webhookIdOf (jobId: string): string {
  return jobId.startsWith(kEncoded) ? Buffer.from(jobId.slice(kEncoded.length), 'base64url').toString('utf8') : jobId
}

interface JobData extends Prepared {
  attempts: WebhookAttempt[]
  reason?: WebhookDeliveryFailure
}

type Bullmq = typeof import('bullmq')

interface OwnConnection {
  readonly status: string
  on: (event: string, fn: (err: Error) => void) => unknown
  get: (key: string) => Promise<string | null>
  set: (key: string, value: string) => Promise<unknown>
  del: (key: string) => Promise<number>
  ping: () => Promise<unknown>
  quit: () => Promise<unknown>
  disconnect: () => void
  readonly options?: { retryStrategy?: (times: number) => number | null | undefined }
}

interface Waiter { service: string, resolve: (value: WebhookDelivered) => void, reject: (err: unknown) => void }

/** A 408 / 429 / 5xx / no answer: BullMQ retries it, after the wait `retryAfter` may lengthen (the backoff reads it). */
class RetryableAttempt extends Error {
  retryAfter: number | undefined
  constructor (message: string, retryAfter: number | undefined) {
    super(message)
    this.retryAfter = retryAfter
  }
}

/** bullmq, loaded only when a webhook service has `redis`; `InvalidOptionsError` naming `key` when missing. */
export function loadBullmq (key: string, name = 'bullmq'): Bullmq {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(name) as Bullmq
  } catch (err) {
    if ((err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err
    throw invalid(key, `with redis, webhook deliveries are BullMQ jobs: needs the ${name} package, which is not installed: npm install ${name}`)
  }
}

export class BullmqWebhookQueue implements WebhookQueue {
  private readonly registry: SenderRegistry
  private readonly redis: RedisConnection
  private readonly url: string | undefined
  private readonly closeTimeout: number
  private readonly bullmq: Bullmq
  private readonly services: string[]
  private readonly prefix: string
  /** The Worker's connection (BullMQ's requirements: no retry limit, an offline queue). */
  private conn: OwnConnection | undefined
  /** The Queue's and the disabled flag's: fails fast (no offline queue, no retry, no resend on reconnect). */
  private producerConn: OwnConnection | undefined
  private eventsConn: OwnConnection | undefined
  private queue: Queue | undefined
  private events: QueueEvents | undefined
  private worker: Worker | undefined
  private readonly disabled = new Set<string>()
  private readonly counters = new Map<string, Omit<WebhookStats, 'queued' | 'disabled'>>()
  /** Events this process queued and has not seen end (id -> service), and how many per service: `stats().queued`. */
  private readonly mine = new Map<string, string>()
  private readonly queuedBy = new Map<string, number>()
  private readonly waiters = new Map<string, Set<Waiter>>()
  private poll: NodeJS.Timeout | undefined
  private closing = false
  /** `close()` is past its last use of Redis: a connection that reconnects now (Redis back before its retry) is cut. */
  private closed = false

  constructor (registry: SenderRegistry, services: string[], redis: RedisConnection, url: string | undefined, closeTimeout: number) {
    this.registry = registry
    this.redis = redis
    this.url = url
    this.closeTimeout = closeTimeout
    this.services = services
    this.bullmq = loadBullmq(`services.${services[0]}.webhook`)
    // BullMQ joins its prefix and the queue's name with ':': `fhs:` becomes `fhs:webhooks:<id>`.
    this.prefix = redis.prefix.replace(/:$/, '') === '' ? 'bull' : redis.prefix.replace(/:$/, '')
  }

  async send (p: Prepared): Promise<void> {
    await this.accept(p)
  }

  async sendAndWait (p: Prepared): Promise<WebhookDelivered> {
    // close() ran while accept() awaited Redis: it has settled its waiters already (or cut the connection under
    // accept()); this caller is told the same, whether or not the event is queued (it stays in Redis if it is).
    await this.accept(p).catch((err: unknown) => { throw this.closing ? deliveryError(p.service, p.id, 'closed', []) : err })
    if (this.closing) throw deliveryError(p.service, p.id, 'closed', [])
    return await new Promise((resolve, reject) => {
      let set = this.waiters.get(p.id)
      if (set === undefined) this.waiters.set(p.id, set = new Set())
      set.add({ service: p.service, resolve, reject })
      if (this.poll === undefined) {
        this.poll = setInterval(() => { for (const id of this.waiters.keys()) void this.look(id) }, kPollEvery)
        this.poll.unref()
      }
      void this.look(p.id)
    })
  }

  async deadLetters (name?: string): Promise<DeadLetter[]> {
    const jobs = await this.bounded('list the dead letters', async () => await this.ensure().getFailed(0, -1))
    const out: DeadLetter[] = []
    for (const job of jobs) {
      const data = job.data as JobData
      if (name !== undefined && data.service !== name) continue
      out.push(letterOf(data, data.reason ?? 'exhausted', data.attempts ?? [], job.finishedOn ?? job.timestamp))
    }
    return out.sort((a, b) => a.failedAt - b.failedAt)
  }

  async replay (id: string): Promise<WebhookReceipt> {
    if (this.closing) throw new ClientClosedError('webhooks: the registry is closed')
    const queue = this.ensure()
    const job = await this.bounded('replay', async () => await queue.getJob(jobIdOf(String(id))))
    if (job === undefined || job === null) throw noLetter(id)
    const data = job.data as JobData
    this.configOf(data.service)
    if (await this.isDisabledNow(data.service)) throw disabledError(data.service, data.id, [])
    // Atomic in Redis (only a failed job moves): of two concurrent replays, one queues it, the other finds no letter.
    // The attempts start again from the first; the data's old outcomes are dropped at the next attempt.
    try {
      await this.bounded('replay', async () => { await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true }) })
    } catch (err) {
      if (err instanceof HttpServicesError) throw err
      throw noLetter(id)
    }
    this.queued(data.id, data.service)
    return { id: data.id, service: data.service }
  }

  /** Undelivered events stay in Redis, for this or another instance: nothing to save on close. */
  pending (): PendingWebhook[] {
    return []
  }

  isDisabled (name: string): boolean {
    return this.disabled.has(name)
  }

  async enable (name: string): Promise<void> {
    this.ensure()
    await this.bounded('enable', async () => await this.producer().del(this.disabledKey(name)))
    this.disabled.delete(name)
  }

  stats (name: string): WebhookStats {
    return { queued: this.queuedBy.get(name) ?? 0, ...(this.counters.get(name) ?? { delivered: 0, deadLettered: 0, attempts: 0 }), disabled: this.disabled.has(name) }
  }

  async open (): Promise<void> {
    if (this.closing || this.worker !== undefined) return
    this.ensure()
    const { Worker } = this.bullmq
    this.worker = new Worker('webhooks', async (job, token) => await this.process(job as Job<JobData>, token), {
      connection: this.connection() as never,
      prefix: this.prefix,
      concurrency: kConcurrency,
      settings: { backoffStrategy: (attemptsMade, _type, err, job) => this.backoff(attemptsMade, err, job?.data as JobData | undefined) }
    })
    this.worker.on('error', (err) => { this.redis.warn('webhooks worker', err) })
    await Promise.all(this.services.map(async (name) => { await this.isDisabledNow(name).catch(() => {}) }))
  }

  async close (): Promise<void> {
    if (this.closing) return
    this.closing = true
    clearInterval(this.poll)
    // The worker stops taking jobs and waits for the attempts in flight, which the services' close bounds. With Redis
    // away nothing can finish: the connections are cut at once (a job a worker still holds is taken up again, after
    // its lock expires, by another instance). A connection's status lags behind a Redis just gone: it is asked.
    // Every step is bounded: BullMQ's own close waits for Redis.
    const up = this.producerConn?.status === 'ready' && (this.conn === undefined || this.conn.status === 'ready') &&
      await answers(this.producerConn, kCloseStep)
    if (!up) this.cutAll()
    if (this.worker !== undefined) {
      const closing = this.worker.close(!up)
      if (!await settleWithin(closing, up ? this.closeTimeout + kCloseStep : kCloseStep)) {
        // Redis went away during the close, or does not answer: BullMQ's close waits for it and stops the worker's
        // timers (lock renewal, stalled-job check) only at its end. Cut, the connections fail what waits on them and
        // that close ends; a reconnecting one ends at its next retry (`retryStrategy` gives up once closing).
        this.cutAll()
        await settleWithin(this.worker.disconnect(), kCloseStep)
        await settleWithin(closing, kMaxRetryDelay + kCloseStep)
      }
    }
    // A delivery the worker finished while closing settles its callers as delivered; the others are told `closed`.
    if (up) await settleWithin(Promise.all([...this.waiters.keys()].map(async (id) => { await this.look(id) })), kCloseStep)
    for (const [id, set] of this.waiters) {
      for (const w of set) w.reject(deliveryError(w.service, id, 'closed', []))
    }
    this.waiters.clear()
    await settleWithin(Promise.all([this.events?.close(), this.queue?.close()]), kCloseStep)
    // From here a reconnecting one ends at its next attempt: failed, its retryStrategy gives up; connected, it is cut
    // ('ready'), even while the others quit.
    this.closed = true
    await Promise.all([this.conn, this.producerConn, this.eventsConn].map(async (c) => {
      if (c === undefined || c.status === 'end' || c.status === 'reconnecting') return
      if (!await settleWithin(c.quit(), kCloseStep)) cut(c)
    }))
  }

  private cutAll (): void {
    for (const c of [this.conn, this.producerConn, this.eventsConn]) if (c !== undefined) cut(c)
  }

  /** The queue and its events, made on first use (a send before `open()` is queued; only `open()` attempts). */
  private ensure (): Queue {
    if (this.queue !== undefined) return this.queue
    const { Queue, QueueEvents } = this.bullmq
    this.queue = new Queue('webhooks', { connection: this.producer() as never, prefix: this.prefix })
    this.queue.on('error', (err) => { this.redis.warn('webhooks queue', err) })
    this.eventsConn = this.newConnection()
    // A short block: with Redis gone, BullMQ's watchdog on a read (the block + 1 s) is what outlives close().
    this.events = new QueueEvents('webhooks', { connection: this.eventsConn as never, prefix: this.prefix, blockingTimeout: kEventsBlock })
    this.events.on('error', (err) => { this.redis.warn('webhooks events', err) })
    const ended = ({ jobId }: { jobId: string }): void => {
      const id = webhookIdOf(jobId)
      this.ended(id)
      if (this.waiters.has(id)) void this.look(id)
    }
    this.events.on('completed', ended)
    this.events.on('failed', ended)
    return this.queue
  }

  private connection (): OwnConnection {
    this.conn ??= this.newConnection()
    return this.conn
  }

  /** The fail-fast connection: a command sent while Redis is away fails at once instead of running when it is back. */
  private producer (): OwnConnection {
    this.producerConn ??= this.newConnection({ maxRetriesPerRequest: 0, enableOfflineQueue: false, autoResendUnfulfilledCommands: false })
    return this.producerConn
  }

  private newConnection (failFast?: object): OwnConnection {
    // What BullMQ requires of its Worker's and QueueEvents' connections; the registry's own refuses both (its commands
    // must fail fast). A Queue may fail fast: `failFast` is for the producer.
    // Once closing, a reconnection gives up: the connection ends and fails what waits on it (a `disconnect()` while it
    // reconnects would leave it reconnecting forever, its commands pending, and BullMQ's close waiting on them).
    const given = this.redis.owned ? undefined : (this.redis.client as unknown as OwnConnection).options?.retryStrategy
    const retryStrategy = (times: number): number | null | undefined =>
      this.closing ? null : given !== undefined ? given(times) : Math.min(times * 50, kMaxRetryDelay)
    const options = { maxRetriesPerRequest: null, enableOfflineQueue: true, lazyConnect: false, keyPrefix: '', retryStrategy, ...failFast }
    const c = (this.redis.owned
      ? new (loadIoredis())(this.url as string, options)
      : (this.redis.client as unknown as { duplicate: (o: object) => unknown }).duplicate(options)) as OwnConnection
    c.on('error', (err) => { this.redis.warn('webhooks connection', err) })
    c.on('ready', () => { if (this.closed) c.disconnect() })
    return c
  }

  private async accept (p: Prepared): Promise<void> {
    const config = this.configOf(p.service)
    const queue = this.ensure()
    if (await this.isDisabledNow(p.service)) throw disabledError(p.service, p.id, [])
    const state = await this.bounded('send', async () => await queue.getJobState(jobIdOf(p.id)))
    // The same id again is the same delivery (queued, in an attempt, or delivered within a day); a dead letter is
    // sent again by replay(id), which keeps its history.
    if (state === 'failed') throw new InvalidRequestError(`webhooks: ${p.service}: event ${p.id} is a dead letter: replay(id) sends it again`)
    if (state !== 'unknown') return
    const data: JobData = { ...p, attempts: [] }
    await this.bounded('send', async () => await queue.add(p.type, data, {
      jobId: jobIdOf(p.id),
      delay: config.schedule[0],
      attempts: config.schedule.length,
      backoff: { type: 'webhook-schedule' },
      removeOnComplete: { age: kKeepDelivered },
      removeOnFail: false
    }))
    this.queued(p.id, p.service)
  }

  /** One attempt of `job`, in this process's worker: resolves when delivered, throws for BullMQ to retry or fail it. */
  private async process (job: Job<JobData>, token: string | undefined): Promise<{ attempts: WebhookAttempt[] }> {
    const d = job.data
    const { DelayedError, UnrecoverableError } = this.bullmq
    let service
    try {
      service = this.registry.get(d.service)
      if (service.options.webhook === undefined) throw new Error('not a webhook service')
    } catch {
      // Another instance (another version of the app?) queued it: left for one that knows the service.
      this.redis.warn('webhooks', new Error(`job ${d.id} is for service ${JSON.stringify(d.service)}, which this instance has no webhook option for`))
      await job.moveToDelayed(Date.now() + kUnknownServiceWait, token)
      throw new DelayedError()
    }
    const log = service.log
    // Outcomes recorded by attempts BullMQ counted; a replay reset the count, so its history starts afresh.
    const attempts = (d.attempts ?? []).slice(0, job.attemptsMade)
    const end = async (reason: WebhookDeliveryFailure): Promise<never> => {
      // Bounded: with Redis stalled the attempt must still end (else the lock expires and the job is attempted again);
      // the dead letter then lacks this last outcome and its reason (it reads as 'exhausted').
      await this.redis.bounded('webhook dead letter', async () => { await job.updateData({ ...d, attempts, reason }) }, kBackgroundTimeout)
      this.ended(d.id)
      this.count(d.service, 'deadLettered')
      log.error({ webhookId: d.id, type: d.type, reason, attempts }, 'webhook not delivered: moved to the dead letters')
      throw new UnrecoverableError(reason)
    }
    if (await this.isDisabledNow(d.service)) return await end('disabled')
    const outcome: WebhookAttempt = { attempt: attempts.length + 1, at: Date.now() }
    this.count(d.service, 'attempts')
    const { verdict, retryAfter } = await attemptOnce(this.registry, d, outcome, () => this.closing)
    if (verdict === 'closed') {
      // Not an attempt of the schedule: the event waits for this or another instance to try again.
      log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, error: outcome.error }, 'webhook attempt stopped: the registry is closing; left in Redis')
      await job.moveToDelayed(Date.now(), token)
      throw new DelayedError()
    }
    attempts.push(outcome)
    if (verdict === 'delivered') {
      await this.redis.bounded('webhook outcome', async () => { await job.updateData({ ...d, attempts }) }, kBackgroundTimeout)
      // Also through the queue's events; here too, for an end they missed (they only see what follows their start).
      this.ended(d.id)
      this.count(d.service, 'delivered')
      log.info({ webhookId: d.id, type: d.type, attempts: attempts.length, status: outcome.status }, 'webhook delivered')
      return { attempts }
    }
    if (verdict === 'gone') {
      const set = await this.redis.bounded('webhook disabled', async () => await this.producer().set(this.disabledKey(d.service), '1'), kBackgroundTimeout)
      if (set === undefined) log.warn({ webhookId: d.id, service: d.service }, 'webhook endpoint answered 410 Gone: the shared disabled flag could not be set in Redis (this instance stops its attempts)')
      this.disabled.add(d.service)
      log.warn({ webhookId: d.id, status: 410 }, 'webhook endpoint answered 410 Gone: disabled until enable() is called')
      return await end('gone')
    }
    if (verdict === 'rejected') return await end('rejected')
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) return await end('exhausted')
    await this.redis.bounded('webhook outcome', async () => { await job.updateData({ ...d, attempts }) }, kBackgroundTimeout)
    const config = service.options.webhook as ResolvedWebhook
    log.warn({ webhookId: d.id, type: d.type, attempt: outcome.attempt, status: outcome.status, error: outcome.error, nextAttemptIn: nextWait(config.schedule, attempts.length, retryAfter) }, 'webhook attempt failed')
    throw new RetryableAttempt(`attempt ${outcome.attempt} failed`, retryAfter)
  }

  /** The wait before the next attempt: `attemptsMade` attempts were made, so it is `schedule[attemptsMade]`. */
  private backoff (attemptsMade: number, err: Error | undefined, data: JobData | undefined): number {
    let schedule = [kUnknownServiceWait]
    try {
      schedule = this.registry.get(data?.service ?? '').options.webhook?.schedule ?? schedule
    } catch {}
    const index = Math.min(attemptsMade, schedule.length - 1)
    return nextWait(schedule, index, (err as RetryableAttempt | undefined)?.retryAfter)
  }

  /** Settles the `sendAndWait` callers of `id` when its job ended. */
  private async look (id: string): Promise<void> {
    if (this.queue === undefined || !this.waiters.has(id)) return
    let job: Job<JobData> | undefined
    let state: string
    try {
      job = await this.queue.getJob(jobIdOf(id)) ?? undefined
      state = job === undefined ? 'unknown' : await job.getState()
      // Removed between the two reads: the job read first is gone, not ended.
      if (state === 'unknown') job = undefined
    } catch (err) {
      this.redis.warn('webhooks', err)
      return
    }
    const set = this.waiters.get(id)
    if (set === undefined) return
    if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return
    this.waiters.delete(id)
    this.ended(id)
    if (this.waiters.size === 0) {
      clearInterval(this.poll)
      this.poll = undefined
    }
    for (const w of set) {
      if (job === undefined) {
        w.reject(new InvalidRequestError(`webhooks: ${w.service}: event ${id} was removed from the queue before it ended`))
      } else if (state === 'completed') {
        w.resolve({ id, service: w.service, attempts: (job.returnvalue as { attempts?: WebhookAttempt[] } | null)?.attempts ?? job.data.attempts })
      } else {
        w.reject(deliveryError(w.service, id, job.data.reason ?? 'exhausted', job.data.attempts ?? []))
      }
    }
  }

  /** Reads the shared 410 flag (and remembers it for `isDisabled`); Redis trouble reads as not disabled. */
  private async isDisabledNow (name: string): Promise<boolean> {
    const value = await this.redis.bounded('webhook disabled', async () => await this.producer().get(this.disabledKey(name)), kBackgroundTimeout)
    if (value === undefined) return this.disabled.has(name)
    if (value === null) this.disabled.delete(name)
    else this.disabled.add(name)
    return value !== null
  }

  private disabledKey (name: string): string {
    return this.redis.key(`webhook-disabled:${name}`)
  }

  private configOf (name: string): ResolvedWebhook {
    const config = this.registry.get(name).options.webhook
    if (config === undefined) throw new InvalidRequestError(`webhooks: service ${name} has no webhook option (secret, scheme, schedule)`)
    return config
  }

  private queued (id: string, service: string): void {
    if (this.mine.has(id)) return
    this.mine.set(id, service)
    this.queuedBy.set(service, (this.queuedBy.get(service) ?? 0) + 1)
  }

  private ended (id: string): void {
    const service = this.mine.get(id)
    if (service === undefined) return
    this.mine.delete(id)
    this.queuedBy.set(service, (this.queuedBy.get(service) ?? 1) - 1)
  }

  private count (name: string, what: 'delivered' | 'deadLettered' | 'attempts'): void {
    let c = this.counters.get(name)
    if (c === undefined) this.counters.set(name, c = { delivered: 0, deadLettered: 0, attempts: 0 })
    c[what]++
  }

  /**
   * `run()` (producer commands), or a 503 `HttpServicesError` when Redis is not there or does not answer within
   * `kRedisWait` ms. `run()` starts only once the producer connection is ready (its first connection may take a while)
   * and never after the 503: on a connection without an offline queue, nothing runs later behind the caller's back.
   */
  private async bounded<T> (what: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    let late = false
    const unavailable = (detail: string): HttpServicesError => {
      const err = new HttpServicesError(`webhooks: Redis did not answer${detail} (${what})`)
      err.statusCode = 503
      return err
    }
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        late = true
        reject(unavailable(` within ${kRedisWait} ms`))
      }, kRedisWait)
    })
    const queue = this.ensure()
    const conn = this.producer()
    const attempt = (async () => {
      // BullMQ's first connection and version check; afterwards it resolves at once, and the status tells.
      await queue.waitUntilReady().catch((err: Error) => { throw unavailable(`: ${err.message}`) })
      if (late) throw unavailable(` within ${kRedisWait} ms`)
      if (conn.status !== 'ready') throw unavailable(`: the connection is ${conn.status}`)
      try {
        return await run()
      } catch (err) {
        // The connection failing (the command refused or cut off) is Redis not answering; any other error is run()'s.
        // ioredis may refuse a command on a socket that stopped being writable before its status leaves 'ready'.
        if (!(err instanceof HttpServicesError) && (conn.status !== 'ready' || isConnectionError(err))) {
          throw unavailable(`: ${(err as Error).message}`)
        }
        throw err
      }
    })()
    attempt.catch(() => {}) // after the timeout, its outcome is nobody's
    try {
      return await Promise.race([attempt, timeout])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** ioredis's errors for a connection that is gone or going: the command never reached Redis, or its answer was lost. */
const kConnectionError = /Stream isn't writeable|Connection is closed|MaxRetriesPerRequest|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT/

function isConnectionError (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { name, message, code } = err as { name?: unknown, message?: unknown, code?: unknown }
  return name === 'MaxRetriesPerRequestError' || (typeof code === 'string' && kConnectionError.test(code)) ||
    (typeof message === 'string' && kConnectionError.test(message))
}

/**
 * Cuts `c`, unless it is reconnecting: that one ends at its next attempt (failed, its `retryStrategy` gives up once
 * closing; connected, its 'ready' listener cuts it once the close ended).
 */
function cut (c: OwnConnection): void {
  if (c.status !== 'reconnecting' && c.status !== 'end') c.disconnect()
}

/** Whether `c` answers a PING within `ms`. */
async function answers (c: OwnConnection, ms: number): Promise<boolean> {
  let answered = false
  await settleWithin(c.ping().then(() => { answered = true }), ms)
  return answered
}

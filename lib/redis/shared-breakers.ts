/**
 * Breaker openings shared through Redis (`breaker.shared`): a breaker that opens in one instance of the app opens the
 * same service's (or upstream's) breaker in every instance on the same Redis and key prefix.
 *
 * Why by hand: opossum has no shared state (each breaker lives in its process), and the few "distributed breaker"
 * packages keep the whole window in a store, which puts a Redis round trip on every attempt. Here each instance still
 * counts its own calls and decides alone; only an opening travels, twice:
 * - a message on the channel `<prefix>breaker` (JSON: service, upstream, state, instance, reason), which the other
 *   instances receive on a connection of their own (a subscribed connection can do nothing else): ioredis's
 *   `duplicate()` of the registry's client, made on open and closed on close, also when the client was the user's;
 * - a key `<prefix>breaker:<service>` (`…:<service>:<origin>` for one upstream of several) that lives as long as the
 *   breaker stays open (`resetAfter`), read when the subscription (re)connects: an instance that starts, or comes back
 *   from a Redis outage, during an opening sees it too. Its value is the opening's message, which names the instance
 *   that wrote it (`instance`) and when the opening ends (`until`, epoch ms, for people reading it: the key's own
 *   PTTL is what counts). A closing deletes it only if it is still the one this instance wrote (compare-and-delete,
 *   in Lua): an instance whose breaker was opened from elsewhere never wrote it, and an instance that opened first
 *   must not erase a newer opening another instance wrote since (after its probe failed), or instances starting
 *   later would miss that one.
 *
 * Catch-up and the remaining time: a breaker can only be opened for its whole `resetAfter` (`trip()` is opossum's
 * `open()`, whose open period is the breaker's `resetTimeout`; there is no opening for a given duration). So an
 * opening read from a key is applied only while at least half of `resetAfter` is left of it (the key's PTTL): an
 * instance then stays open at most 1.5 × `resetAfter` after the first opening, instead of up to twice it, and an
 * opening about to end is not re-opened for a whole period. Below half, this instance stays closed and its own calls
 * decide (it may send the upstream up to that half-period's traffic sooner than the others).
 *
 * The seam is the `breaker:state` diagnostics channel, where every breaker already says when it changes: nothing on
 * the call path changes. An opening received is applied through the breaker's `trip()` (opossum's `open()`); its own
 * half-open probing takes over from there, and it is not published again (its message says `remote`). Redis away:
 * breakers are local.
 */
import { randomUUID } from 'node:crypto'
import diagnosticsChannel from 'node:diagnostics_channel'
import { breakerState } from '../diagnostics/channels'
import type { BreakerStateMessage } from '../diagnostics/messages'
import { breakerOf } from '../pipeline/breaker'
import type { ServiceRuntime } from '../pipeline/types'
import { breakerUpstreams } from '../upstream-origins'
import { kBackgroundTimeout, type RedisConnection } from './connection'

/** What travels on the channel. */
interface Opening {
  service: string
  upstream?: string
  state: 'open' | 'closed'
  instance: string
  reason?: string
  /** Openings: when the opener's breaker half-opens, epoch ms (informative: the key's PTTL is what counts). */
  until?: number
}

/**
 * Deletes KEYS[1] only if its value is still ARGV[1] (what this instance wrote): a closing never erases another
 * instance's opening. 1 when deleted, 0 otherwise.
 */
const kDeleteIfMine = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** An opening's key and its remaining time (ms; negative: no key, or no expiry), in one round trip. */
const kReadOpening = `return { redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]) }`

/** The subscriber connection: an ioredis client in subscriber mode. */
interface Subscriber {
  readonly status: string
  subscribe: (channel: string) => Promise<unknown>
  on: (event: string, fn: (...args: any[]) => void) => unknown
  disconnect: () => void
}

type Publisher = RedisConnection['client'] & {
  publish: (channel: string, message: string) => Promise<unknown>
  get: (key: string) => Promise<string | null>
  eval?: (script: string, keys: number, ...args: Array<string | number>) => Promise<unknown>
  duplicate?: (options?: Record<string, unknown>) => Subscriber
  on?: (event: string, fn: () => void) => unknown
  off?: (event: string, fn: () => void) => unknown
}

/** A reason received from Redis is shown in log lines: short, printable. */
function cleanReason (reason: unknown): string {
  return typeof reason === 'string' ? reason.replace(/[^\x20-\x7e]/g, '').slice(0, 80) : 'unknown'
}

export class SharedBreakers {
  /** This registry's id in the messages: its own openings come back on the channel and are ignored. */
  readonly instance = randomUUID()
  private readonly redis: RedisConnection
  private readonly services: Map<string, ServiceRuntime>
  private readonly registry: object
  private readonly channel: string
  private subscriber: Subscriber | undefined = undefined
  private subscribed = false
  private opened = false
  /** The value this instance last wrote to each opening's key: its closing deletes the key only if it still holds it. */
  private readonly written = new Map<string, string>()
  private readonly onState = (message: unknown): void => { this.published(message as BreakerStateMessage) }
  private readonly onMainReady = (): void => { void this.catchUp() }

  /** `services`: those with `breaker.shared`, of the registry `registry`. */
  constructor (redis: RedisConnection, services: ServiceRuntime[], registry: object) {
    this.redis = redis
    this.services = new Map(services.map((s) => [s.name, s]))
    this.registry = registry
    this.channel = redis.key('breaker')
  }

  /** `subscribed` while the subscription is up, `unsubscribed` otherwise (Redis away: breakers are local). */
  get state (): 'subscribed' | 'unsubscribed' {
    return this.subscribed && this.subscriber?.status === 'ready' ? 'subscribed' : 'unsubscribed'
  }

  open (): void {
    if (this.opened) return
    this.opened = true
    diagnosticsChannel.subscribe(breakerState.name, this.onState)
    const client = this.client
    if (typeof client.duplicate !== 'function') {
      this.redis.warn('breaker subscribe', new Error('the redis client has no duplicate(): breaker openings are not received'))
      return
    }
    // Its own offline queue, whatever the main client's: the SUBSCRIBE waits for Redis; ioredis resubscribes after
    // a reconnection by itself.
    const sub = client.duplicate({ lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null })
    this.subscriber = sub
    sub.on('error', (err: Error) => { this.redis.warn('breaker subscribe', err) })
    sub.on('message', (channel: string, text: string) => { if (channel === this.channel) this.received(text) })
    // Every (re)connection: openings published while this instance was not listening are read from their keys.
    sub.on('ready', () => { void this.catchUp() })
    client.on?.('ready', this.onMainReady)
    sub.subscribe(this.channel).then(() => { this.subscribed = true }, (err: unknown) => { this.redis.warn('breaker subscribe', err) })
  }

  close (): void {
    if (!this.opened) return
    this.opened = false
    diagnosticsChannel.unsubscribe(breakerState.name, this.onState)
    this.client.off?.('ready', this.onMainReady)
    this.subscribed = false
    this.subscriber?.disconnect()
    this.subscriber = undefined
    this.written.clear()
  }

  private get client (): Publisher {
    return this.redis.client as Publisher
  }

  private keyOf (service: string, upstream: string | undefined): string {
    return this.redis.key(upstream === undefined ? `breaker:${service}` : `breaker:${service}:${upstream}`)
  }

  /** A breaker of this process changed state: an opening (or closing) of a shared one is published. */
  private published (m: BreakerStateMessage): void {
    // An opening received (`remote`) is not published again.
    if (m.remote || m.registry !== this.registry || (m.state !== 'open' && m.state !== 'closed')) return
    const service = this.services.get(m.service)
    if (service === undefined) return
    const key = this.keyOf(m.service, m.upstream)
    const ttl = Math.max(1, Math.ceil((service.options.breaker as { resetAfter: number }).resetAfter))
    const opening: Opening = { service: m.service, upstream: m.upstream, state: m.state, instance: this.instance, reason: m.lastFailure }
    if (m.state === 'open') opening.until = Date.now() + ttl
    const text = JSON.stringify(opening)
    const client = this.client
    if (m.state === 'open') {
      this.written.set(key, text)
      void this.redis.bounded('breaker publish', () => client.set(key, text, 'PX', ttl), kBackgroundTimeout)
    } else {
      // Deleted only if it is still this instance's opening (an opening received from elsewhere wrote nothing here).
      const mine = this.written.get(key)
      this.written.delete(key)
      if (mine !== undefined && typeof client.eval === 'function') {
        const run = client.eval.bind(client)
        void this.redis.bounded('breaker publish', () => run(kDeleteIfMine, 1, key, mine), kBackgroundTimeout)
      }
    }
    void this.redis.bounded('breaker publish', () => client.publish(this.channel, text), kBackgroundTimeout)
  }

  /** A message from the channel: another instance's opening is applied here. */
  private received (text: string): void {
    let opening: Partial<Opening>
    try {
      opening = JSON.parse(text) as Partial<Opening>
    } catch {
      return
    }
    if (opening.state !== 'open') return
    this.apply(opening)
  }

  private apply (opening: Partial<Opening>): void {
    if (opening.instance === this.instance || typeof opening.service !== 'string') return
    const service = this.services.get(opening.service)
    if (service === undefined) return
    const breakers = breakerOf(service)
    if (breakers === undefined) return
    const upstream = typeof opening.upstream === 'string' ? opening.upstream : undefined
    breakers.trip(upstream, cleanReason(opening.reason))
  }

  /**
   * Reads the keys of openings still in force, for every shared breaker, and applies those with at least half of
   * `resetAfter` left (see the header: a trip always opens for a whole `resetAfter`).
   */
  private async catchUp (): Promise<void> {
    const client = this.client
    if (!this.opened || client.status !== 'ready' || typeof client.eval !== 'function') return
    const run = client.eval.bind(client)
    for (const service of this.services.values()) {
      const least = (service.options.breaker as { resetAfter: number }).resetAfter / 2
      for (const upstream of breakerUpstreams(service.options) ?? [undefined]) {
        const reply = await this.redis.bounded('breaker read', () => run(kReadOpening, 1, this.keyOf(service.name, upstream)), kBackgroundTimeout)
        if (!Array.isArray(reply) || !this.opened) continue
        const [text, pttl] = reply as [unknown, unknown]
        if (typeof text === 'string' && typeof pttl === 'number' && pttl >= least) this.received(text)
      }
    }
  }
}

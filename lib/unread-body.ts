import { performance } from 'node:perf_hooks'
import type { Readable } from 'node:stream'
import { bodyDone } from './body-done'
import { TimeoutError, describe, redactPath, stamp } from './errors'
import type { Logger } from './pipeline/types'
import type { BodyWatch, HttpResponse, ResponseCall, ResponseMeta } from './response'

/*
 * A response body nobody reads holds its connection: undici stops reading the socket once the body stream's buffer
 * is full, and its `bodyTimeout` does not run while the stream is paused, so the connection stays busy for good
 * (with `connections: 1`, every later call waits for it). Written by hand: undici leaves consuming the body to the
 * caller (its `dump` interceptor is for bodies the caller never sees), Node has no timeout for a stream nobody reads,
 * and no package watches for one. This watchdog discards a body that nobody has started to read when its response
 * is garbage-collected or when the body sat unread for `timeout.body`.
 *
 * Only a body still to come when its response is handed over is watched: a small body that came with its headers
 * is in the stream's buffer by then, its connection free (measured: 60 KB of JSON from node:http on loopback was,
 * 200 KB was not), so `get()` + `res.json()` of a small body costs a check. A watched body costs a small record, a
 * clock read, a Set insertion and a FinalizationRegistry entry (1-2 µs of CPU in all, measured on the shared 2-core
 * machine; the registration is most of it);
 * no timer per call (one per service, armed for the oldest body). The queue holds the body stream, never the
 * response, so the response can be collected.
 *
 * `DeadlineQueue` (./pipeline/deadline-queue) holds call signals that all share the service's total timeout; here a
 * call may set its own `timeout.body`. So each distinct timeout has a lane (a Set in insertion order, hence in
 * deadline order), the service's own lane first; the one timer is armed for the earliest head of a lane.
 */

type State = 'unread' | 'reading' | 'discarded'

const ignore = (): void => {}

// setTimeout fires at once past this delay: a longer wait is made of several.
const kMaxDelay = 2 ** 31 - 1

/**
 * `true` when the whole body is in the stream's buffer already (a small body, in the packets of its headers): undici
 * has let go of the connection, and the body is memory that is collected with its response. For a decoded body, the
 * raw body it decodes on first read is what holds the connection. The stream's `ended` (`push(null)` done) has no
 * public getter; undici reads `_readableState` too.
 */
function received (stream: Readable): boolean {
  const raw = (stream as { source?: Readable }).source ?? stream
  return (raw as unknown as { _readableState: { ended: boolean } })._readableState.ended
}

/** `true` once someone started reading the stream (a 'data' or 'readable' listener, a pipe, `for await`, `read()`), or it is over. */
function touched (stream: Readable): boolean {
  return stream.readableFlowing !== null || stream.readableDidRead || stream.destroyed || stream.readableEnded
}

/** @internal One response body handed to the caller, watched until someone reads it. */
export class UnreadBody implements BodyWatch {
  state: State = 'unread'
  /** `res.body` was handed out: the caller may read the stream without the response, which may then be collected. */
  private handedOut = false

  constructor (
    private readonly watchdog: UnreadBodies,
    readonly lane: Set<UnreadBody>,
    readonly stream: Readable,
    readonly meta: ResponseMeta,
    /** The call, for its bound logger (the inbound request's `reqId`). */
    readonly call: ResponseCall | undefined,
    readonly timeout: number,
    readonly deadline: number
  ) {}

  /** The response is being read (`json()`, `text()`, `arrayBuffer()`): throws the error saying why it cannot be, once discarded. */
  claim (): void {
    if (this.state === 'discarded') throw this.discardedError()
    this.release()
  }

  /** Nothing to watch any more: the body is being read, dumped or destroyed. */
  release (): void {
    if (this.state !== 'unread') return
    this.state = 'reading'
    this.lane.delete(this)
  }

  /** `res.body` is being handed out: whoever takes the stream may read it later; it leaves the queue once it closes. */
  handOut (): void {
    if (this.handedOut || this.state !== 'unread') return
    this.handedOut = true
    this.stream.once('close', () => { this.release() })
  }

  /** @internal Due: discarded unless someone started reading it. */
  expire (now: number): void {
    this.lane.delete(this)
    if (this.state !== 'unread') return
    if (touched(this.stream)) {
      this.state = 'reading'
      return
    }
    this.discard(now, `response body left unread for ${this.timeout} ms (timeout.body): discarded to free its connection; ` +
      'read it or call dump()')
  }

  /** @internal Its response was garbage-collected: nobody can read the body but through a stream handed out. */
  collected (): void {
    if (this.state !== 'unread' || this.handedOut) return
    this.lane.delete(this)
    if (touched(this.stream)) {
      this.state = 'reading'
      return
    }
    this.discard(performance.now(), 'response garbage-collected with its body unread: body discarded to free its ' +
      'connection; read the body or call dump()')
  }

  private discard (now: number, why: string): void {
    this.state = 'discarded'
    const stream = this.stream
    // Destroyed with the error a later read gets: `for await` over `res.body` rejects with it too. Destroying an
    // unfinished undici body aborts its request, which frees the connection.
    stream.on('error', ignore)
    stream.destroy(this.discardedError())
    const meta = this.meta
    const log = this.call?.log ?? this.watchdog.log
    const unreadFor = Math.round(now - this.deadline + this.timeout)
    log.warn({ method: meta.method, path: redactPath(meta.path), unreadFor }, `${describe(meta)}: ${why}`)
  }

  private discardedError (): Error {
    const e = new TimeoutError(
      `${describe(this.meta)}: the response body was discarded: it was left unread for ${this.timeout} ms (timeout.body)`)
    return stamp(e, this.meta, { phase: 'body', timeout: this.timeout })
  }
}

const kCollected = new FinalizationRegistry<UnreadBody>((body) => { body.collected() })

/** @internal The unread bodies of one service, under one timer. */
export class UnreadBodies {
  /** The service's own `timeout.body` lane, then one per other timeout calls set (rare). */
  private readonly lanes = new Map<number, Set<UnreadBody>>()
  private readonly main = new Set<UnreadBody>()
  private timer: NodeJS.Timeout | undefined = undefined
  private armedAt = Infinity

  constructor (readonly log: Logger, private readonly timeout: number) {
    this.lanes.set(timeout, this.main)
  }

  /** Watches the body of a response about to be handed to the caller; returns the response. */
  watch (res: HttpResponse): HttpResponse {
    if (bodyDone(res) || received(res.bodyStream as Readable)) return res
    const timeout = res.meta.timeouts?.body ?? this.timeout
    let lane = timeout === this.timeout ? this.main : this.lanes.get(timeout)
    if (lane === undefined) {
      lane = new Set()
      this.lanes.set(timeout, lane)
    }
    const deadline = performance.now() + timeout
    const body = new UnreadBody(this, lane, res.bodyStream as Readable, res.meta, res.call, timeout, deadline)
    lane.add(body)
    res.unreadBody = body
    kCollected.register(res, body)
    if (deadline < this.armedAt) this.arm(deadline)
    return res
  }

  private arm (at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.armedAt = at
    this.timer = setTimeout(this.fire, Math.min(kMaxDelay, Math.max(1, Math.ceil(at - performance.now()))))
    // Bodies in flight keep the process alive through their sockets; the watchdog must not.
    this.timer.unref()
  }

  private readonly fire = (): void => {
    this.timer = undefined
    this.armedAt = Infinity
    const now = performance.now()
    let next = Infinity
    for (const [timeout, lane] of this.lanes) {
      for (const body of lane) {
        if (body.deadline > now) {
          if (body.deadline < next) next = body.deadline
          break
        }
        body.expire(now)
      }
      if (lane.size === 0 && lane !== this.main) this.lanes.delete(timeout)
    }
    if (next !== Infinity) this.arm(next)
  }

  /** Stops the timer (service closed): the dispatcher has closed or destroyed what was left. */
  clear (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.armedAt = Infinity
    for (const lane of this.lanes.values()) {
      for (const body of lane) body.release()
    }
    this.lanes.clear()
    this.main.clear()
    this.lanes.set(this.timeout, this.main)
  }
}

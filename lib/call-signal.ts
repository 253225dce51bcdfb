type Listener = () => void

/** A listener that is an object: no closure per listener (an attempt in flight listens to its call's signal). */
export interface AbortListener {
  onSignalAbort: () => void
}

/**
 * A minimal abort signal for one call or one inbound request.
 *
 * undici accepts any EventEmitter-like object as `signal` (`on`/`once`/`removeListener`, `aborted`, `reason`).
 * A Node `AbortController` plus `EventTarget` listeners costs about a fifth of raw undici's throughput on a
 * small request (DESIGN.md, "The hot path"); this plain object with an array of listeners costs next to
 * nothing, and is only created when something can actually abort the call.
 */
export class CallSignal {
  aborted = false
  protected abortReason: unknown = undefined
  private listeners: Array<Listener | AbortListener> | undefined = undefined
  private unlinkers: Array<() => void> | undefined = undefined

  /** Aborts with `reason` and notifies every listener once. Later calls do nothing. */
  abort (reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.abortReason = reason
    const listeners = this.listeners
    this.listeners = undefined
    this.unlink()
    if (listeners !== undefined) {
      for (const fn of listeners) {
        if (typeof fn === 'function') fn()
        else fn.onSignalAbort()
      }
    }
  }

  /** Why the signal aborted; read by undici and by every follower when it aborts. */
  get reason (): unknown {
    return this.abortReason
  }

  on (_event: 'abort', fn: Listener | AbortListener): this {
    if (this.listeners === undefined) this.listeners = [fn]
    else this.listeners.push(fn)
    return this
  }

  once (event: 'abort', fn: Listener | AbortListener): this {
    return this.on(event, fn)
  }

  removeListener (_event: 'abort', fn: Listener | AbortListener): this {
    const listeners = this.listeners
    if (listeners !== undefined) {
      const i = listeners.lastIndexOf(fn)
      if (i !== -1) listeners.splice(i, 1)
    }
    return this
  }

  /** Whether anything still listens: a call whose request and body are done has no listener left. */
  get listening (): boolean {
    return this.listeners !== undefined && this.listeners.length > 0
  }

  off (event: 'abort', fn: Listener | AbortListener): this {
    return this.removeListener(event, fn)
  }

  /** Aborts this signal when `parent` aborts (with the parent's reason, or `wrap(reason)`). `unlink()` undoes it; several parents may be followed. */
  follow (parent: CallSignal | AbortSignal, wrap?: (reason: unknown) => unknown): void {
    if (parent.aborted) {
      this.abort(wrap !== undefined ? wrap(parent.reason) : parent.reason)
      return
    }
    const onAbort = (): void => this.abort(wrap !== undefined ? wrap(parent.reason) : parent.reason)
    let unlink: () => void
    if (parent instanceof CallSignal) {
      parent.on('abort', onAbort)
      unlink = () => parent.removeListener('abort', onAbort)
    } else {
      parent.addEventListener('abort', onAbort, { once: true })
      unlink = () => parent.removeEventListener('abort', onAbort)
    }
    if (this.unlinkers === undefined) this.unlinkers = [unlink]
    else this.unlinkers.push(unlink)
  }

  /** Detaches from the followed parents: call when the call is over so long-lived parents do not collect listeners. */
  unlink (): void {
    const unlinkers = this.unlinkers
    if (unlinkers !== undefined) {
      this.unlinkers = undefined
      for (const fn of unlinkers) fn()
    }
  }
}

import type { ServiceRuntime } from './types'

/**
 * Requests undici still holds for attempts that have already settled: the attempt's signal aborted (the caller, a
 * total or attempt timeout, a deadline) while its request waited for a connection (undici's queue, a connect or TLS
 * handshake). undici offers no way to take a queued request out; the transport settles the attempt at once anyway and
 * leaves the request behind, to be aborted unsent when undici reaches it, or failed with the connection.
 *
 * Shared by the transport (which counts them) and the bulkhead (which counts each as a slot in use until undici
 * drops it, so a flood of calls that give up while queued cannot grow undici's queue past `maxConcurrent`). Touched
 * only on that rare path: a call that settles normally never sees it.
 */
export class AbandonedRequests {
  /** Requests left in undici's hands. */
  count = 0
  /** Called each time undici drops one (the bulkhead: a slot may be free again). */
  onDrop: (() => void) | undefined = undefined

  add (): void {
    this.count++
  }

  drop (): void {
    this.count--
    // undici drops a request from inside its own dispatch loop: a waiting call is started after it, not within it.
    if (this.onDrop !== undefined) queueMicrotask(this.onDrop)
  }
}

/** The service's one `AbandonedRequests`, shared by both of its chains. */
export function abandonedRequestsOf (service: ServiceRuntime): AbandonedRequests {
  return service.shared('abandonedRequests', () => new AbandonedRequests())
}

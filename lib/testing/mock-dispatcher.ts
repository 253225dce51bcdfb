import { errors, type Dispatcher, type MockAgent } from 'undici'
import { kServeRegistry, type HttpServices } from '../services'

/** What the mock set does with the calls that go through its dispatcher. */
export interface MockRouter {
  /** The options to hand undici's MockAgent for a call (another upstream of a service is sent to its first one). */
  route: (opts: Dispatcher.DispatchOptions) => Dispatcher.DispatchOptions
  /** The error a call matched by no interceptor fails with (undici's `MockNotMatchedError` is `cause`). */
  unmatched: (opts: Dispatcher.DispatchOptions, cause: Error) => Error
  /** Records the services of a registry that uses this dispatcher. */
  serve: (registry: HttpServices) => void
}

const kNotMatched = 'UND_MOCK_ERR_MOCK_NOT_MATCHED'

/**
 * Passes undici's events on to the caller's handler, with two changes. A call matched by no interceptor fails
 * with the mock set's clear error rather than undici's (which the client would take for a connection failure).
 * And the call's `headersTimeout` is enforced, as a real pool would: a reply delayed past it fails with undici's
 * `HeadersTimeoutError`, so the client's timeout handling runs as in production.
 */
class MockCallHandler implements Dispatcher.DispatchHandler {
  private readonly handler: Dispatcher.DispatchHandler
  private readonly opts: Dispatcher.DispatchOptions
  private readonly router: MockRouter
  private timer: NodeJS.Timeout | undefined = undefined

  constructor (handler: Dispatcher.DispatchHandler, opts: Dispatcher.DispatchOptions, router: MockRouter) {
    this.handler = handler
    this.opts = opts
    this.router = router
  }

  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    const limit = this.opts.headersTimeout
    if (typeof limit === 'number' && limit > 0) {
      this.timer = setTimeout(() => controller.abort(new errors.HeadersTimeoutError()), limit)
      this.timer.unref()
    }
    this.handler.onRequestStart?.(controller, context)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.clear()
    this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Dispatcher.DispatchController, error: Error): void {
    this.clear()
    const code = (error as { code?: unknown }).code
    this.handler.onResponseError?.(controller, code === kNotMatched ? this.router.unmatched(this.opts, error) : error)
  }

  private clear (): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
  }
}

/**
 * The dispatcher a mock set hands the plugin: undici's `MockAgent` composed with an interceptor that routes each
 * call (see `MockCallHandler`). A registry built with it tells it its services (`kServeRegistry`), so tests
 * intercept by service name.
 */
export function mockDispatcher (agent: MockAgent, router: MockRouter): Dispatcher {
  Object.defineProperty(agent, kServeRegistry, {
    value: (registry: HttpServices) => router.serve(registry),
    configurable: true
  })
  return agent.compose((dispatch) => (opts, handler) => {
    return dispatch(router.route(opts), new MockCallHandler(handler, opts, router))
  })
}

import { Readable } from 'node:stream'

/** What feeds a bridge: the dispatch handler of the attempt whose response body it is. */
export interface BodySource {
  /** The reader wants more: resume a paused response. */
  resumeBody: () => void
  /** The bridge was destroyed: abort the response if it is still coming in (`reason`, or an abort error). */
  bodyClosed: (reason: Error | null) => void
}

function ignore (): void {}

/**
 * The response body of an attempt that an undici dispatch handler receives, as a stream: the handler pushes the
 * chunks (`push` returning `false` pauses the response until the reader asks for more) and ends or destroys it.
 * Destroying it before its end (the reader gave up, an abort) aborts the response, which closes its connection.
 *
 * A failure of the response (its connection, a timeout, an abort) may come when nobody reads the body any more, or
 * ever will: like undici's own body, the bridge then never throws it unheard (it always has an 'error' listener).
 * A reader still gets the error: `for await`, `pipeline()` and `finished()` see the stream's error whatever listens.
 */
export class BodyBridge extends Readable {
  private readonly source: BodySource

  constructor (source: BodySource) {
    super()
    this.source = source
    this.on('error', ignore)
  }

  override _read (): void {
    this.source.resumeBody()
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.source.bodyClosed(err)
    callback(err)
  }
}

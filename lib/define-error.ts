import createError from '@fastify/error'

/** A constructor of one of this library's errors. `instanceof` works across duplicate installs. */
export interface ErrorClass<E extends Error> {
  new (message: string, options?: { cause?: unknown }): E
  readonly prototype: E
}

/**
 * An error class made with @fastify/error's `createError` (so `code`, `statusCode`, and `instanceof` across duplicate
 * installs through `Symbol.for`, work as in Fastify's own errors), named `name`.
 *
 * Two things are changed from what `createError` gives, in a subclass: every instance of a `createError` class is
 * named `FastifyError` (an own property), so logs (pino reads `err.constructor.name` into `type`) and `toString()`
 * could not tell a timeout from a refused connection; here `name` and the class's name are `name`, read from the
 * prototype like a native error's. And `createError` sets `cause` as an enumerable property, so `JSON.stringify(err)`
 * (or any serializer that walks fields) would show an undici error's raw bytes or a socket's address; here `cause`
 * is not enumerable, like a native error's, and still readable as `err.cause`.
 *
 * The extra work happens only when an error is made, never on a call that succeeds.
 */
export function defineError<E extends Error> (name: string, code: string, statusCode: number, Base: unknown = Error): ErrorClass<E> {
  // No stack is captured by `createError`'s constructor: the subclass captures it once, without its own frame.
  const Created = createError(code, '%s', statusCode, Base as ErrorConstructor, false) as unknown as new (...args: unknown[]) => Error
  // A computed key names the class `name` (what pino reads); `captureStackTrace` must get the class itself.
  const Named = {
    [name]: class extends Created {
      constructor (message: string, options?: { cause?: unknown }) {
        // An `options` without `cause` would be formatted into the message by `createError`.
        if (options != null && 'cause' in options) super(message, options)
        else super(message)
        delete (this as { name?: string }).name
        if (Object.hasOwn(this, 'cause')) {
          Object.defineProperty(this, 'cause', { value: (this as { cause?: unknown }).cause, enumerable: false, writable: true, configurable: true })
        }
        if (Error.stackTraceLimit > 0) Error.captureStackTrace(this, Named)
      }
    }
  }[name]
  Object.defineProperty(Named.prototype, 'name', { value: name, enumerable: false, writable: true, configurable: true })
  return Named as unknown as ErrorClass<E>
}

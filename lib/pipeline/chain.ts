import type { HttpResponse } from '../response'
import type { CallContext, Layer, Next, Outcome, Policy, PolicySteps } from './types'

/*
 * How policies are put together into one chain, in callback form.
 *
 * Written here rather than as promise stages (`next(ctx).then(...)` per policy): a promise and its reaction per
 * policy per call, with the microtask each reaction takes, was most of what the pipeline cost over undici itself
 * (issue 18; measured against the floor in `npm run bench`). Here a call goes down the chain as plain calls, and its
 * outcome comes back up through `Outcome` objects: a policy written as steps (`PolicySteps`) costs a call one small
 * object and no promise; a `Policy` function keeps its promise (it is adapted at its place in the chain), so both
 * kinds mix. The caller's promise is the only one the common call makes (`HttpService.run`).
 *
 * Rules every layer keeps: it never throws (a failure is reported to `out`), and it reports exactly once, with the
 * `ctx` it was given.
 */

function nothing (): void {}

/** Where an outcome reported once already would go: nowhere (a layer holds it in place of the one it used). */
export const kNowhere: Outcome = { resolved: nothing, rejected: nothing }

/** A layer's outcome settling a promise: where a `Policy` function or a step's `below` waits on the chain below. */
class PromiseOutcome implements Outcome {
  constructor (private readonly resolve: (res: HttpResponse) => void, private readonly reject: (err: unknown) => void) {}

  resolved (_ctx: CallContext, res: HttpResponse): void {
    this.resolve(res)
  }

  rejected (_ctx: CallContext, err: unknown): void {
    this.reject(err)
  }
}

/** The chain below a point, as a function returning a promise (for `Policy` functions and steps that take a call). */
export function toNext (layer: Layer): Next {
  return (ctx) => new Promise<HttpResponse>((resolve, reject) => { layer(ctx, new PromiseOutcome(resolve, reject)) })
}

/** Reports a step's result (a response, or a promise of one) to `out`. */
function pass (out: Outcome, ctx: CallContext, result: HttpResponse | Promise<HttpResponse>): void {
  if (result instanceof Promise) {
    result.then((res) => { out.resolved(ctx, res) }, (err: unknown) => { out.rejected(ctx, err) })
  } else {
    out.resolved(ctx, result)
  }
}

/** A step's `response` or `failure`. */
type StepHook = (value: unknown, ctx: CallContext, below: Next) => HttpResponse | Promise<HttpResponse>

/** The outcome of the call below a step: runs the step's `response` or `failure`, and reports what it makes of it. */
class StepOutcome implements Outcome {
  constructor (private readonly steps: PolicySteps, private readonly below: Next, private readonly out: Outcome) {}

  resolved (ctx: CallContext, res: HttpResponse): void {
    const response = this.steps.response
    if (response === undefined) this.out.resolved(ctx, res)
    else this.answer(response as StepHook, ctx, res)
  }

  rejected (ctx: CallContext, err: unknown): void {
    const failure = this.steps.failure
    if (failure === undefined) this.out.rejected(ctx, err)
    else this.answer(failure, ctx, err)
  }

  /** Reports what the step's `hook` makes of the outcome `value` (a throw is a failure). */
  private answer (hook: StepHook, ctx: CallContext, value: unknown): void {
    let result: HttpResponse | Promise<HttpResponse>
    try {
      result = hook(value, ctx, this.below)
    } catch (err) {
      this.out.rejected(ctx, err)
      return
    }
    pass(this.out, ctx, result)
  }
}

/** `steps` over `inner`: `enter`, then the call below with the step's outcome around it. */
function stepsLayer (steps: PolicySteps, inner: Layer): Layer {
  const below = toNext(inner)
  const watches = steps.response !== undefined || steps.failure !== undefined
  return (ctx, out) => {
    let taken: Promise<HttpResponse> | undefined
    try {
      taken = steps.enter(ctx, below)
    } catch (err) {
      out.rejected(ctx, err)
      return
    }
    if (taken !== undefined) {
      pass(out, ctx, taken)
      return
    }
    inner(ctx, watches ? new StepOutcome(steps, below, out) : out)
  }
}

/** A `Policy` function over `inner`: it gets the chain below as a promise function, and its promise is reported. */
function policyLayer (policy: Policy, inner: Layer): Layer {
  const next = toNext(inner)
  return (ctx, out) => {
    let result: Promise<HttpResponse>
    try {
      result = policy(ctx, next)
    } catch (err) {
      out.rejected(ctx, err)
      return
    }
    pass(out, ctx, result)
  }
}

/** Whether a policy factory's product is steps (an object) rather than a `Policy` function. */
export function isSteps (policy: Policy | PolicySteps): policy is PolicySteps {
  return typeof policy !== 'function'
}

/** A chain, in callback form (what `HttpService.run` drives). */
export interface Chain {
  readonly layer: Layer
}

/** Composes `policies` (outermost first) around `transport` into one chain. */
export function compose (policies: ReadonlyArray<Policy | PolicySteps>, transport: Layer): Chain {
  let layer = transport
  for (let i = policies.length - 1; i >= 0; i--) {
    const policy = policies[i]
    layer = isSteps(policy) ? stepsLayer(policy, layer) : policyLayer(policy, layer)
  }
  return { layer }
}

/**
 * Steps run as a `Policy` function over `next` (a closure pair per call): for a place that calls one policy among
 * several by hand (the breaker of the upstream a call goes to).
 */
export function stepsAsPolicy (steps: PolicySteps): Policy {
  return (ctx, next) => {
    const taken = steps.enter(ctx, next)
    if (taken !== undefined) return taken
    const { response, failure } = steps
    let answer: Promise<HttpResponse>
    try {
      answer = next(ctx)
    } catch (err) {
      answer = Promise.reject(err)
    }
    return answer.then(
      response === undefined ? undefined : (res) => response(res, ctx, next),
      failure === undefined ? undefined : (err: unknown) => failure(err, ctx, next))
  }
}

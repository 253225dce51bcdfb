import { number } from '../checkers'
import { positiveSpan } from '../values'
import { defineGroup, type Spec } from './group'

export interface RetryBudgetOptions {
  /**
   * Retries allowed per request, over the window.
   * @default 0.2
   */
  ratio?: number
  /**
   * Retries per second always allowed.
   * @default 3
   */
  minPerSecond?: number
  /**
   * Window in milliseconds over which requests and retries are counted (the service's only: a call cannot change it).
   * @default 10000
   */
  window?: number
}

export const retryBudgetOptions = defineGroup({
  ratio: { check: number('a number >= 0', (n) => n >= 0), default: 0.2 },
  minPerSecond: { check: number('a number >= 0', (n) => n >= 0), default: 3 },
  window: { check: positiveSpan, default: 10000 }
} satisfies Spec<RetryBudgetOptions>)

/** A retry budget after resolution. */
export type ResolvedRetryBudget = Required<RetryBudgetOptions>

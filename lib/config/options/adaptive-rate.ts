import { number } from '../checkers'
import { positive } from '../values'
import { defineGroup, type Spec } from './group'

export interface AdaptiveRateOptions {
  /**
   * Lowest rate as a fraction of the configured one.
   * @default 0.1
   */
  floor?: number
  /**
   * Highest rate as a fraction of the configured one.
   * @default 1
   */
  ceiling?: number
  /**
   * Fraction of the configured rate added back after each success.
   * @default 0.05
   */
  increase?: number
}

const fraction = number('a number > 0 and <= 1', (n) => n > 0 && n <= 1)

export const adaptiveRateOptions = defineGroup({
  floor: { check: fraction, default: 0.1 },
  ceiling: { check: positive, default: 1 },
  increase: { check: fraction, default: 0.05 }
} satisfies Spec<AdaptiveRateOptions>)

/** The adaptive rate after resolution; a rate limit without it has `undefined`. */
export type ResolvedAdaptiveRate = Required<AdaptiveRateOptions>

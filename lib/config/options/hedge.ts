import { integer } from '../checkers'
import { ms } from '../values'
import { defineGroup, type Spec } from './group'

/** Hedged requests for idempotent methods. */
export interface HedgeOptions {
  /** Milliseconds without a response before another attempt is sent. */
  delay: number
  /**
   * Most extra attempts.
   * @default 1
   */
  maxHedges?: number
}

export const hedgeOptions = defineGroup({
  delay: { check: ms, default: undefined },
  maxHedges: { check: integer(1), default: 1 }
} satisfies Spec<HedgeOptions>, { required: ['delay'] })

/** Hedging after resolution; a service without it has `undefined`. */
export type ResolvedHedge = Required<HedgeOptions>

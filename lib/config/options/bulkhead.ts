import { integer } from '../checkers'
import { positiveMs } from '../values'
import { defineGroup, type Spec } from './group'

/** Bounds calls in flight and waiting, per service. */
export interface BulkheadOptions {
  /** Most calls in flight at once. */
  maxConcurrent: number
  /**
   * Most calls waiting for a slot; more are rejected with `BulkheadRejectedError`.
   * @default 0
   */
  maxQueue?: number
  /**
   * Longest wait for a slot in milliseconds.
   * @default 10000
   */
  queueTimeout?: number
}

export const bulkheadOptions = defineGroup({
  maxConcurrent: { check: integer(1), default: undefined },
  maxQueue: { check: integer(0), default: 0 },
  queueTimeout: { check: positiveMs, default: 10000 }
} satisfies Spec<BulkheadOptions>, { required: ['maxConcurrent'] })

/** A bulkhead after resolution; a service without one has `undefined`. */
export type ResolvedBulkhead = Required<BulkheadOptions>

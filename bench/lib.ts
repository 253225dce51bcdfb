/**
 * The library as the benchmarks load it: the compiled package in `dist/` (what users run; `npm run bench` builds it
 * first), not the TypeScript sources through tsx, whose transform adds work of its own to every closure made.
 */
import type * as Lib from '../index'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lib = require('../dist/index') as typeof Lib

export const { createHttpServices, CircuitOpenError } = lib
/** Every diagnostics channel's name (not a package export: the bench subscribes to all of them). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { kChannelNames } = require('../dist/lib/diagnostics/channels') as typeof import('../lib/diagnostics/channels')
/** The status page's aggregator and snapshot (not package exports: the bench runs them as an open page would). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { StatusAggregator } = require('../dist/lib/status/aggregator') as typeof import('../lib/status/aggregator')
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { buildSnapshot } = require('../dist/lib/status/snapshot') as typeof import('../lib/status/snapshot')
export type { HttpServicesError, HttpServicesOptions } from '../index'
export default lib.httpServices

/**
 * The library as the benchmarks load it: the compiled package in `dist/` (what users run; `npm run bench` builds it
 * first), not the TypeScript sources through tsx, whose transform adds work of its own to every closure made.
 */
import type * as Lib from '../index'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lib = require('../dist/index') as typeof Lib

export const { createHttpServices, CircuitOpenError } = lib
export type { HttpServicesError, HttpServicesOptions } from '../index'
export default lib.httpServices

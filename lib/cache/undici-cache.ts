/**
 * undici's RFC 9111 pieces, typed for this library: its `CacheHandler` (what may be stored, for how long, under which
 * Vary, a 304 refreshing a stored entry, unsafe methods invalidating), its cache-key and Cache-Control parsing, and
 * `MemoryCacheStore`. The handler and the parsing live in undici's `lib/` (it has no `exports` map, so they can be
 * required; test/cache/undici-internals.test.ts fails loudly if an undici update moves them).
 */
import type { Writable } from 'node:stream'
import { cacheStores } from 'undici'
import type CacheInterceptor from 'undici/types/cache-interceptor'

export type CacheKey = CacheInterceptor.CacheKey
export type CacheValue = CacheInterceptor.CacheValue
export type CacheStore = CacheInterceptor.CacheStore
export type GetResult = CacheInterceptor.GetResult
export type CacheControlDirectives = CacheInterceptor.CacheControlDirectives

/** The controller a dispatch handler is given (undici's v2 handler API), as `CacheHandler` uses it. */
export interface DispatchController {
  pause: () => void
  resume: () => void
  abort: (reason?: Error) => void
  readonly paused: boolean
  readonly aborted: boolean
  readonly reason: Error | null
}

/** undici's handler API, the callbacks `CacheHandler` calls on the handler it wraps. */
export interface DispatchHandler {
  onRequestStart?: (controller: DispatchController, context: unknown) => void
  onResponseStart?: (controller: DispatchController, statusCode: number, headers: Record<string, unknown>, statusMessage?: string) => void
  onResponseData?: (controller: DispatchController, chunk: Buffer) => void
  onResponseEnd?: (controller: DispatchController, trailers: Record<string, unknown>) => void
  onResponseError?: (controller: DispatchController, err: Error) => void
}

export interface CacheHandlerOptions {
  store: CacheStore
  type: 'shared' | 'private'
  cacheByDefault?: number
}

export type CacheHandlerClass = new (options: CacheHandlerOptions, key: CacheKey, handler: DispatchHandler) => Required<DispatchHandler>

interface CacheUtil {
  makeCacheKey: (opts: { origin: string, method: string, path: string, headers?: Record<string, string | string[]> }) => CacheKey
  parseCacheControlHeader: (header: string | string[]) => CacheControlDirectives
  parseVaryHeader: (vary: string | string[], headers: Record<string, unknown> | undefined) => Record<string, string | string[] | null> | undefined
  isInvalidOrWildcardVaryHeader: (vary: string | string[]) => boolean
  isEtagUsable: (etag: string) => boolean
}

/* eslint-disable @typescript-eslint/no-require-imports */
export const CacheHandler = require('undici/lib/handler/cache-handler') as CacheHandlerClass
const util = require('undici/lib/util/cache') as CacheUtil
/* eslint-enable @typescript-eslint/no-require-imports */

export const { makeCacheKey, parseCacheControlHeader, parseVaryHeader, isInvalidOrWildcardVaryHeader, isEtagUsable } = util
export const MemoryCacheStore = cacheStores.MemoryCacheStore

/** A writable the store hands out for one entry (`createWriteStream`). */
export type EntryWriter = Writable

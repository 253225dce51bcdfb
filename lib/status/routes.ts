/**
 * The status page's routes (plugin option `statusPage`): `{path}` the HTML page, `{path}.json` a snapshot, and
 * `{path}/events` server-sent events (a snapshot at once, then every second and on each breaker change). `routeOpts`
 * are spread into all three, so one `onRequest` hook guards them. The events are written by hand on the hijacked
 * response (a few lines; @fastify/sse and the like would be a dependency for `data: …\n\n`), and end in `preClose`,
 * before Fastify waits for connections to close, so an open page never delays or blocks `app.close()`.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, RouteOptions } from 'fastify'
import type { ResolvedStatusPage } from '../config/options/status-page'
import type { HttpServices } from '../services'
import { StatusAggregator } from './aggregator'
import { kStatusPage, kStatusPageCsp } from './page'
import { buildSnapshot } from './snapshot'

const kNoStore = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }

/**
 * Writes an event to a stream. A client that does not read (a stalled tab, a stuck proxy) skips events rather than
 * have them pile up here: the next one it can take says everything the skipped ones did.
 */
function send (res: ServerResponse, data: string): void {
  if (!res.writableEnded && !res.destroyed && !res.writableNeedDrain) res.write(data)
}

/** Registers the page's three routes on `fastify` for `registry`. */
export function registerStatusPage (fastify: FastifyInstance, registry: HttpServices, options: ResolvedStatusPage): void {
  const aggregator = new StatusAggregator(registry)
  const streams = new Set<ServerResponse>()
  const snapshot = (): string => JSON.stringify(buildSnapshot(registry.stats(), aggregator, aggregator.now()))
  const routeOpts = options.routeOpts as Partial<RouteOptions>
  const route = (url: string, handler: RouteOptions['handler']): RouteOptions => ({ ...routeOpts, method: 'GET', url, handler })
  let unwatch: (() => void) | undefined
  const broadcast = (): void => {
    const data = `data: ${snapshot()}\n\n`
    for (const res of streams) send(res, data)
  }

  fastify.route(route(options.path, async function httpServicesStatusPage (_request, reply) {
    // Counting starts with the page, so its first events already have the calls since it was opened.
    aggregator.read()
    void reply
      .headers({ ...kNoStore, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': kStatusPageCsp, 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' })
    return kStatusPage
  }))

  fastify.route(route(`${options.path}.json`, async function httpServicesStatusJson (_request, reply) {
    aggregator.read()
    void reply.headers({ ...kNoStore, 'content-type': 'application/json; charset=utf-8' })
    return snapshot()
  }))

  fastify.route(route(`${options.path}/events`, async function httpServicesStatusEvents (request, reply) {
    // Fastify's HEAD route for this GET: the headers, and no stream that would never end.
    if (request.method === 'HEAD') {
      void reply.headers({ ...kNoStore, 'content-type': 'text/event-stream; charset=utf-8' })
      return ''
    }
    const res = reply.raw
    reply.hijack()
    res.writeHead(200, {
      ...kNoStore,
      'content-type': 'text/event-stream; charset=utf-8',
      // The socket goes with the stream when it ends (at app close): no idle keep-alive connection to wait for.
      connection: 'close',
      // nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no'
    })
    streams.add(res)
    // One watch for every stream: a tick makes one snapshot, however many pages are open.
    unwatch ??= aggregator.watch(broadcast)
    res.write('retry: 2000\n\n')
    send(res, `data: ${snapshot()}\n\n`)
    const done = (): void => {
      if (!streams.delete(res) || streams.size > 0) return
      unwatch?.()
      unwatch = undefined
    }
    res.on('close', done)
    res.on('error', done)
    request.raw.on('error', done)
  }))

  fastify.addHook('preClose', function endStatusPageStreams (done) {
    for (const res of streams) res.end()
    streams.clear()
    unwatch = undefined
    aggregator.close()
    done()
  })
  fastify.addHook('onClose', function closeStatusPage (_instance, done) {
    aggregator.close()
    done()
  })
}

/**
 * `checkServices()`: the config resolved exactly as the plugin resolves it, then every service probed in parallel,
 * each upstream step by step (DNS, TCP to each address, or the Unix socket, or the proxy, then TLS and ALPN), then its
 * OAuth2 token endpoint and its `healthPath` through a real client of the library.
 */
import type { Socket } from 'node:net'
import { mergeOptions, resolveOptions } from '../config/resolve'
import type { ResolvedService } from '../config/resolved'
import type { HttpServicesOptions, ServiceOptions } from '../config/types'
import { invalid, isPlainObject, validateOptions } from '../config/validate'
import { loadConfigFile } from '../config/load-file'
import { basePathOf } from '../config/options/service'
import { createHttpServices, type HttpServices } from '../services'
import { probeDns } from './dns'
import { probeHealth } from './health'
import { probeOAuth2 } from './oauth2'
import { probeTunnel, proxyUrl } from './proxy-tunnel'
import { hostOf, portOf, stepOf } from './step'
import { openSocket, probeTcp } from './tcp'
import { probeTls } from './tls'
import type { CheckOptions, CheckReport, CheckStep, ServiceCheck } from './types'

export const kDefaultCheckTimeout = 3000

/** Policies that would hide what the upstream answers (a retry, a fallback, a cached answer) or refuse to ask it. */
const kProbeOff = { retry: false, breaker: false, hedge: false, cache: false, coalesce: false, bulkhead: false, rateLimit: false }

/**
 * Validates `config` (plugin options; a `configFile` is loaded and `${VAR}`s read from the environment, as the plugin
 * does), then probes every service. Each probe step is bounded by `timeout` ms.
 *
 * @returns the report; `status: 'fail'` when some service could not be reached or answered 500 or above.
 * @throws InvalidOptionsError (the promise rejects) on the first invalid option, with the plugin's message.
 */
export async function checkServices (config: HttpServicesOptions, options: CheckOptions = {}): Promise<CheckReport> {
  const timeout = options.timeout ?? kDefaultCheckTimeout
  if (!Number.isInteger(timeout) || timeout <= 0 || timeout > 2_147_483_647) {
    throw invalid('timeout', `expected a positive whole number of milliseconds, got ${String(timeout)}`)
  }
  const merged = loadMerged(config)
  const resolved = resolveOptions(merged)
  const registries: HttpServices[] = []
  const probeRegistry = async (only?: [name: string, baseUrl: string]): Promise<HttpServices> => {
    const r = createHttpServices(probeOptions(merged, timeout, only))
    registries.push(r)
    await r.open()
    return r
  }
  try {
    const main = await probeRegistry()
    const services = await Promise.all([...resolved.services.values()].map(async (s) => {
      // A service with several upstreams gets a registry per upstream, so each health GET goes to the one named.
      const raw = (merged.services as Record<string, ServiceOptions>)[s.name].baseUrl
      const urls = Array.isArray(raw) ? raw : [raw]
      const perUrl = urls.length > 1 ? await Promise.all(urls.map(async (u) => await probeRegistry([s.name, u]))) : [main]
      return await checkService(s, urls.map((u) => new URL(u)), main, perUrl, timeout)
    }))
    return { status: worst(services.map((s) => s.status)), timeout, services }
  } finally {
    await Promise.all(registries.map(async (r) => await r.close().catch(() => {})))
  }
}

/** The options as the plugin sees them: the file loaded under the inline options, `configFile` itself dropped. */
function loadMerged (config: HttpServicesOptions): HttpServicesOptions {
  if (!isPlainObject(config) || config.configFile === undefined) return config
  validateOptions({ configFile: config.configFile })
  const { configFile, ...inline } = config
  return mergeOptions(loadConfigFile(configFile as string), inline) as HttpServicesOptions
}

/** The options of a probe registry: resilience off, every wait bounded, one upstream when `only` names one. */
function probeOptions (merged: HttpServicesOptions, timeout: number, only?: [string, string]): HttpServicesOptions {
  const strip = <T extends object>(o: T): T => {
    const out: Record<string, unknown> = { ...o, ...kProbeOff, timeout: { connect: timeout, headers: timeout, body: timeout, attempt: 0, total: timeout } }
    delete out.fallback
    delete out.webhook
    return out as T
  }
  const services: Record<string, ServiceOptions> = {}
  for (const [name, s] of Object.entries(merged.services ?? {})) {
    services[name] = strip({ ...s, ...(only?.[0] === name ? { baseUrl: only[1] } : {}) })
  }
  const { redis: _redis, underPressure: _up, ...rest } = merged
  return { ...rest, defaults: strip(merged.defaults ?? {}), services, telemetry: false, closeTimeout: 0 }
}

async function checkService (s: ResolvedService, urls: URL[], main: HttpServices, perUrl: HttpServices[], timeout: number): Promise<ServiceCheck> {
  const upstreams = await Promise.all(urls.map(async (url) => await probeUpstream(s, url, timeout)))
  const steps: CheckStep[] = upstreams.flatMap((u) => u.steps)
  const oauth2 = s.auth?.oauth2
  if (oauth2 !== undefined) steps.push(await probeOAuth2(main, s.name, oauth2, timeout))
  if (s.healthPath !== undefined) {
    const path = s.healthPath
    const health = await Promise.all(urls.map(async (url, i) => {
      const target = `${url.origin}${basePathOf(url)}${path}`
      if (!upstreams[i].reachable) return stepOf('health', target, 'skip', 'not probed: the upstream could not be reached', performance.now())
      return await probeHealth(perUrl[i], s.name, path, target, timeout)
    }))
    steps.push(...health)
  }
  return { service: s.name, status: worst(steps.map((step) => step.status)), steps }
}

/** The connection steps of one upstream, and whether a request could reach it. */
async function probeUpstream (s: ResolvedService, url: URL, timeout: number): Promise<{ steps: CheckStep[], reachable: boolean }> {
  const https = url.protocol === 'https:'
  const name = s.tls?.servername ?? hostOf(url)
  const tlsTarget = { name, tls: s.tls, allowH2: s.allowH2, target: url.host }
  const steps: CheckStep[] = []
  const done = (): { steps: CheckStep[], reachable: boolean } => ({ steps, reachable: !steps.some((x) => x.status === 'fail') })

  if (s.socketPath !== undefined) {
    const tcp = await probeTcp({ path: s.socketPath }, timeout)
    steps.push(tcp)
    if (tcp.status === 'ok' && https) {
      let socket: Socket | undefined
      try {
        socket = await openSocket({ path: s.socketPath }, timeout)
      } catch {}
      if (socket !== undefined) steps.push(...await probeTls({ ...tlsTarget, address: '', port: 0, socket }, timeout))
    }
    return done()
  }

  const proxy = s.proxy === undefined ? undefined : proxyUrl(s.proxy, url)
  const host = proxy === undefined ? hostOf(url) : hostOf(proxy)
  const port = proxy === undefined ? portOf(url) : portOf(proxy)
  const dns = await probeDns(host, timeout)
  steps.push(dns)
  const addresses = dns.addresses ?? []
  if (addresses.length === 0) return done()
  const tcp = await Promise.all(addresses.map(async (address) => await probeTcp({ address, port }, timeout)))
  const connected = tcp.filter((x) => x.status === 'ok').length
  // Clients try the next address of a name when one fails: a dead address among live ones slows, it does not break.
  if (connected > 0) for (const x of tcp) if (x.status === 'fail') x.status = 'warn'
  if (proxy !== undefined) for (const x of tcp) if (x.status !== 'ok') x.result += ' (the proxy)'
  steps.push(...tcp)
  if (connected === 0 || !https) return done()
  if (proxy !== undefined && s.proxy !== undefined) {
    const tunnel = await probeTunnel(s.proxy, proxy, url, timeout)
    steps.push(tunnel.step)
    if (tunnel.socket !== undefined) steps.push(...await probeTls({ ...tlsTarget, address: '', port: 0, socket: tunnel.socket }, timeout))
    return done()
  }
  const address = addresses[tcp.findIndex((x) => x.status === 'ok')]
  steps.push(...await probeTls({ ...tlsTarget, address, port }, timeout))
  return done()
}

/** The worst status of a list, `skip` counting as `ok`. */
function worst (statuses: string[]): 'ok' | 'warn' | 'fail' {
  if (statuses.includes('fail')) return 'fail'
  return statuses.includes('warn') ? 'warn' : 'ok'
}

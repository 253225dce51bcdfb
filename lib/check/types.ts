/**
 * What `checkServices()` reports and `check --json` prints: the shape is public API (README, "Checking a config before
 * deploy"), so fields are added, never renamed or removed.
 */

/** `ok`; `warn`: works, but look (a certificate near expiry, HTTP/2 not negotiated); `fail`; `skip`: not probed. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip'

/** The probes, in the order they run for each upstream of a service. */
export type CheckStepName = 'dns' | 'tcp' | 'proxy' | 'tls' | 'h2' | 'oauth2' | 'health'

/** One probe of one target. */
export interface CheckStep {
  step: CheckStepName
  /** What was probed: a host name, `address:port`, a socket path, a proxy `host:port`, an origin or a URL without query. */
  target: string
  status: CheckStatus
  /** One line for people: what was found, or the cause of the failure (`ECONNREFUSED 127.0.0.1:8443`). */
  result: string
  /** How long the probe took, in whole milliseconds. */
  ms: number
  /** A machine-readable cause of a failure or warning: an errno (`ECONNREFUSED`), an OpenSSL code, an RFC 6749 error. */
  code?: string
  /** `dns`: every address the name resolved to. */
  addresses?: string[]
  /** `tls`: whole days until the certificate expires; once expired, minus the whole days since (0 within a day). */
  daysLeft?: number
  /** `tls`: the protocol ALPN chose (`h2`, `http/1.1`), when one was. */
  alpn?: string
  /** `health`: the status the health path answered with. */
  httpStatus?: number
}

/** Every probe of one service; its status is the worst of its steps' (`skip` counts as `ok`). */
export interface ServiceCheck {
  service: string
  status: 'ok' | 'warn' | 'fail'
  steps: CheckStep[]
}

/** The whole report. `status` is the worst of the services'. */
export interface CheckReport {
  status: 'ok' | 'warn' | 'fail'
  /** The bound on each step, in milliseconds. */
  timeout: number
  services: ServiceCheck[]
}

/** Options of `checkServices()`. */
export interface CheckOptions {
  /**
   * The bound on each probe step (DNS, each connect, TLS handshake, the token request, the health GET), in ms.
   * @default 3000
   */
  timeout?: number
}

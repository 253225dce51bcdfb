import { boolean, integer } from '../checkers'
import { positiveSpan } from '../values'
import { defineGroup, type Spec } from './group'

/** DNS caching through undici's `dns` interceptor. */
export interface DnsOptions {
  /**
   * How long a resolved address is reused, in milliseconds.
   * @default 10000
   */
  ttl?: number
  /**
   * Most host names kept.
   * @default 100
   */
  maxItems?: number
  /**
   * Resolve both IPv4 and IPv6 and alternate between them.
   * @default true
   */
  dualStack?: boolean
}

export const dnsOptions = defineGroup({
  ttl: { check: positiveSpan, default: 10000 },
  maxItems: { check: integer(1), default: 100 },
  dualStack: { check: boolean, default: true }
} satisfies Spec<DnsOptions>)

/** DNS caching after resolution (the interceptor's options); a service without it has `undefined`. */
export type ResolvedDns = Required<DnsOptions>

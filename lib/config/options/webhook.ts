/**
 * A service's `webhook` option: the service is a webhook endpoint, and `httpServices.webhooks.send(name, event)`
 * signs with these secrets and retries on this schedule (lib/webhooks/sender.ts).
 */
import { arrayOf, invalid, isString, oneOf, rule, variants } from '../checkers'
import { ms, string } from '../values'
import { hmacHeaderOf, keysOf } from '../../webhooks/keys'
import type { WebhookScheme } from '../../webhooks/scheme'
import { defineGroup, type Spec } from './group'

/** How webhooks sent to a service are signed, and when they are retried. */
export interface WebhookOptions {
  /** The secret, or several during a rotation (one signature each; `hmac` signs with the first). */
  secret: string | string[]
  /**
   * `'standard'` (Standard Webhooks), `'stripe'` or `'hmac'`.
   * @default 'standard'
   */
  scheme?: WebhookScheme
  /**
   * The waits in ms before each attempt, the first included: its length is the number of attempts. The default is
   * the Standard Webhooks specification's: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
   * @default [0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 50400000, 72000000, 86400000]
   */
  schedule?: number[]
  /**
   * The path events are POSTed to (under the service's base path) unless `send` names one.
   * @default '/'
   */
  path?: string
  /**
   * The `hmac` scheme's header.
   * @default 'x-webhook-signature'
   */
  header?: string
}

const secretList = arrayOf(string, 'a non-empty array of secrets', 1)

export const webhookOptions = defineGroup({
  secret: { check: variants([isString, string], [Array.isArray, secretList]), default: undefined },
  scheme: { check: oneOf('standard', 'stripe', 'hmac'), default: 'standard' },
  schedule: { check: arrayOf(ms, 'a non-empty array of waits in milliseconds', 1), default: [0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 50400000, 72000000, 86400000] },
  path: { check: rule('a path starting with "/"', (v) => isString(v) && v.startsWith('/')), default: '/' },
  header: { check: string, default: 'x-webhook-signature' }
} satisfies Spec<WebhookOptions>, {
  required: ['secret'],
  refine (value, key) {
    const scheme = (value.scheme ?? 'standard') as WebhookScheme
    keysOf(scheme, value.secret, `${key}.secret`)
    hmacHeaderOf(value.header, `${key}.header`)
    if (scheme === 'hmac' && Array.isArray(value.secret) && value.secret.length > 1) {
      throw invalid(`${key}.secret`, 'the hmac scheme carries one signature: give one secret')
    }
  }
})

/** A service's `webhook` option after resolution (its secrets turned into keys once). */
export interface ResolvedWebhook {
  scheme: WebhookScheme
  /** The secrets as given: `signWebhook` takes them. Not enumerable. */
  readonly secrets: string[]
  schedule: number[]
  path: string
  header: string
}

/**
 * `key` names the service (`services.<name>`). A fallback answers a failed call with a 200 of its value, so a delivery
 * to a service with one would count as delivered while the endpoint is down: the two are refused together.
 */
export function resolveWebhook (value: WebhookOptions, key: string, hasFallback: boolean): ResolvedWebhook {
  if (hasFallback) {
    throw invalid(`${key}.webhook`, 'cannot be combined with fallback (a fallback answer would count as delivered; set fallback per service, not in defaults)')
  }
  const d = webhookOptions.defaults
  const resolved = {
    scheme: value.scheme ?? d.scheme,
    schedule: [...(value.schedule ?? d.schedule)],
    path: value.path ?? d.path,
    header: (value.header ?? d.header).toLowerCase()
  }
  // Not enumerable, like the auth secrets: a logged, inspected or serialized option set does not show them.
  Object.defineProperty(resolved, 'secrets', { value: Array.isArray(value.secret) ? [...value.secret] : [value.secret] })
  return resolved as ResolvedWebhook
}

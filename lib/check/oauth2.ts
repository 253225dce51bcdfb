/** The `oauth2` step: one token request through the library's own token source. */
import { OAuth2TokenSource } from '../auth/oauth2'
import type { ResolvedOAuth2 } from '../config/options/auth'
import type { HttpServices } from '../services'
import { silentLogger } from '../services'
import { bounded, stepOf } from './step'
import type { CheckStep } from './types'

/** The token endpoint as output may show it: origin and path, never the query (it may hold a secret). */
export function tokenTarget (settings: ResolvedOAuth2): string {
  if (settings.tokenService !== undefined) return `${settings.tokenService} ${settings.tokenUrl.replace(/[?#].*$/, '')}`
  const url = new URL(settings.tokenUrl)
  return `${url.origin}${url.pathname}`
}

/**
 * One real client-credentials token request with the service's settings, through the library's own token source (so
 * the form, client authentication and `tokenService` routing are the ones calls use). Reports the RFC 6749 error code
 * the endpoint sent, never the token, the secret or the endpoint's free text.
 */
export async function probeOAuth2 (registry: HttpServices, service: string, settings: ResolvedOAuth2, timeout: number): Promise<CheckStep> {
  const start = performance.now()
  const target = tokenTarget(settings)
  const source = new OAuth2TokenSource(service, settings, silentLogger, (name) => registry.client(name), registry.resolved.dispatcher)
  try {
    await bounded(timeout, 'token request', async () => await source.token())
    return stepOf('oauth2', target, 'ok', 'token issued', start)
  } catch (err) {
    const error = (err as { error?: unknown }).error
    if (typeof error === 'string') return stepOf('oauth2', target, 'fail', `token endpoint refused: ${error}`, start, { code: error })
    const code = (err as { code?: unknown }).code
    return stepOf('oauth2', target, 'fail', (err as Error).message, start, { code: typeof code === 'string' ? code : undefined })
  } finally {
    await source.close()
  }
}

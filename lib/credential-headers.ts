/**
 * Request headers that carry credentials whatever the service. undici's cache checks `authorization` alone; cookies
 * and the usual API-key headers identify a user just as well, so the shared cache (RFC 9111 §3.5) and request
 * coalescing (calls with different credentials never share an answer) both treat them as credentials.
 */
export const kCredentialHeaders: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key', 'x-auth-token'
])

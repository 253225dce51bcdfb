/**
 * Statuses that mean the downstream failed: 5xx, 408 (it timed out reading the request) and 429 (it is overloaded).
 * Other 4xx are answers about the request (404: no such thing), which neither open a breaker nor call for a fallback.
 */
export function isFailureStatus (status: number): boolean {
  return status >= 500 || status === 408 || status === 429
}

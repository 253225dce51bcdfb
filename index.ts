/**
 * The package's public surface, in the shape Fastify's own plugins ship (@fastify/redis, @fastify/under-pressure):
 * the plugin is the module itself (`module.exports`), with `.default` and `.httpServices` pointing at it and every
 * other export as a property. `import httpServices from 'fastify-http-services'` then gives the plugin both in an
 * ES module (Node hands a CommonJS module's `module.exports` over as its default export) and through
 * `esModuleInterop`, and `require('fastify-http-services')` is the plugin too. The types say the same thing with
 * `export =` and a namespace merged with the plugin function.
 *
 * Each export is written twice: in the namespace (its types) and as a `module.exports.name =` line, the form Node's
 * ES module loader reads to learn a CommonJS module's named exports (cjs-module-lexer: it does not run the code).
 * test/package/exports.test.ts checks that the two lists agree and that lib/errors and lib/config/types are covered.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Dispatcher } from 'undici'
import './lib/plugin' // its `declare module 'fastify'` (the decorators' types) must reach index.d.ts
import { httpServicesPlugin } from './lib/plugin'
import {
  createHttpServices, HttpServices, silentLogger, type CreateHttpServicesOptions, type HttpServiceNames, type ServiceName
} from './lib/services'
import { HttpClient } from './lib/client'
import { HttpResponse, type CacheStatus } from './lib/response'
import type { CacheAside, CacheAsideGetOptions, CacheAsideOptions } from './lib/cache/cache-aside'
import { HttpService, type FailureCounts, type ServiceStats } from './lib/service'
import type { RedisStats } from './lib/redis/stats'
import type { CallOptions, CallTimeoutOptions, JsonCallOptions, QueryValue } from './lib/client-types'
import type { MultipartFields, MultipartFile, MultipartValue } from './lib/multipart'
import type {
  AdaptiveRateOptions, ApiKeyOptions, AuthOptions, BasicAuthOptions, BreakerOptions, BulkheadOptions, CommonServiceOptions,
  DeadlineHeadersOptions, DnsOptions, Fallback, HedgeOptions, HttpServicesOptions, OAuth2Options, ProxyOptions, RateLimitOptions, RetryBudgetOptions, RetryOptions,
  ServiceOptions, TimeoutOptions, TlsOptions, UnderPressureOptions, WebhookOptions, CoalesceOptions, TelemetryOptions,
  CacheOptions, RedisClient, RedisOptions, SharedRateLimitOptions, StatusPageOptions
} from './lib/config/types'
import type { ServiceStatus, StatusSnapshot, UpstreamBreakerStatus } from './lib/status/snapshot'
import type { CallContext, Logger, Next, Policy } from './lib/pipeline/types'
import type {
  AttemptMessage, BreakerStateMessage, BulkheadMessage, CacheMessage, CallEvent, CallMessage, FallbackServedMessage,
  HedgeFiredMessage, RateLimitMessage, RetryDelaySource, RetryEvent, RetryRefusal, RetryRefusedMessage, RetryScheduledMessage
} from './lib/diagnostics/messages'
import {
  AuthError, BulkheadRejectedError, CircuitOpenError, ClientClosedError, ConnectionError, DecompressError, ForbiddenUrlError,
  HttpServicesError, HttpStatusError, InvalidOptionsError, InvalidRequestError, RateLimitedError, RequestAbortedError,
  ResponseParseError, ResponseTooLargeError, TimeoutError, TlsError, TransportError, UnknownServiceError,
  WebhookDeliveryError, WebhookHandlerError, WebhookVerificationError,
  isHttpServicesError, type CallTarget, type HttpServicesErrorClass, type TimeoutPhase, type WebhookAttempt,
  type WebhookDeliveryFailure, type WebhookFailure
} from './lib/errors'
import { signWebhook, type SignWebhookOptions } from './lib/webhooks/sign'
import { verifyWebhook, type VerifyWebhookOptions, type WebhookHeaders } from './lib/webhooks/verify'
import type { WebhookScheme } from './lib/webhooks/scheme'
import { webhookReceiver } from './lib/webhooks/receiver'
import type { WebhookMeta, WebhookReceiverOptions } from './lib/webhooks/receiver-options'
import type { DeadLetter, DeadLetterStore } from './lib/webhooks/dead-letters'
import type {
  PendingWebhook, SendWebhookOptions, WebhookDelivered, WebhookEvent, WebhookReceipt, WebhookSender, WebhookStats
} from './lib/webhooks/sender'
import {
  MemoryIdempotencyStore, type Claim, type ClaimResult, type IdempotencyStore, type MemoryIdempotencyStoreOptions
} from './lib/webhooks/idempotency-store'
import { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './lib/webhooks/redis-idempotency-store'
import { isHttpServicesRequest } from './lib/telemetry/undici-instrumentation'
import { checkServices } from './lib/check/run'
import type { CheckOptions, CheckReport, CheckStatus, CheckStep, CheckStepName, ServiceCheck } from './lib/check/types'

/** The Fastify plugin: `fastify.register(httpServices, { services, defaults, configFile })`. */
function httpServices (fastify: FastifyInstance, options: HttpServicesOptions): Promise<void> {
  return httpServicesPlugin(fastify, options)
}
fp(httpServices, { fastify: '5.x', name: 'fastify-http-services' })

declare namespace httpServices {
  export { httpServices as default, httpServices }
  export { createHttpServices, HttpServices, silentLogger, HttpClient, HttpResponse, HttpService }
  export type { CacheAside, CacheAsideGetOptions, CacheAsideOptions, CacheStatus, CreateHttpServicesOptions, FailureCounts, HttpServiceNames, RedisStats, ServiceName, ServiceStats }
  export type { CallOptions, CallTimeoutOptions, JsonCallOptions, QueryValue }
  export type { MultipartFields, MultipartFile, MultipartValue }
  export type {
    AdaptiveRateOptions, ApiKeyOptions, AuthOptions, BasicAuthOptions, BreakerOptions, BulkheadOptions, CommonServiceOptions,
    DeadlineHeadersOptions, DnsOptions, Fallback, HedgeOptions, HttpServicesOptions, OAuth2Options, ProxyOptions, RateLimitOptions, RetryBudgetOptions, RetryOptions,
    ServiceOptions, TimeoutOptions, TlsOptions, UnderPressureOptions, WebhookOptions, CoalesceOptions, TelemetryOptions,
    CacheOptions, RedisClient, RedisOptions, SharedRateLimitOptions, StatusPageOptions
  }
  // the status page's JSON (README, "Status page")
  export type { ServiceStatus, StatusSnapshot, UpstreamBreakerStatus }
  export type { CallContext, Logger, Next, Policy }
  // the messages of the diagnostics channels (README, "Diagnostics channels")
  export type {
    AttemptMessage, BreakerStateMessage, BulkheadMessage, CacheMessage, CallEvent, CallMessage, FallbackServedMessage,
    HedgeFiredMessage, RateLimitMessage, RetryDelaySource, RetryEvent, RetryRefusal, RetryRefusedMessage, RetryScheduledMessage
  }
  // undici's `Dispatcher` as this package uses it (the `dispatcher` option's type), whichever undici the app has
  export type { Dispatcher }
  export {
    AuthError, BulkheadRejectedError, CircuitOpenError, ClientClosedError, ConnectionError, DecompressError, ForbiddenUrlError,
    HttpServicesError, HttpStatusError, InvalidOptionsError, InvalidRequestError, RateLimitedError, RequestAbortedError,
    ResponseParseError, ResponseTooLargeError, TimeoutError, TlsError, TransportError, UnknownServiceError,
    WebhookDeliveryError, WebhookHandlerError, WebhookVerificationError, isHttpServicesError
  }
  export type { CallTarget, HttpServicesErrorClass, TimeoutPhase, WebhookAttempt, WebhookDeliveryFailure, WebhookFailure }
  // webhooks (README, "Webhooks")
  export { signWebhook, verifyWebhook, webhookReceiver, MemoryIdempotencyStore, RedisIdempotencyStore }
  export type { DeadLetter, DeadLetterStore, PendingWebhook, SendWebhookOptions, WebhookDelivered, WebhookEvent, WebhookReceipt, WebhookSender, WebhookStats }
  export type { SignWebhookOptions, VerifyWebhookOptions, WebhookHeaders, WebhookScheme }
  export type { Claim, ClaimResult, IdempotencyStore, MemoryIdempotencyStoreOptions, RedisIdempotencyStoreOptions, WebhookMeta, WebhookReceiverOptions }
  // telemetry (README, "Telemetry"): instrumentation-undici's `ignoreRequestHook`
  export { isHttpServicesRequest }
  // the check command's API (README, "Checking a config before deploy")
  export { checkServices }
  export type { CheckOptions, CheckReport, CheckStatus, CheckStep, CheckStepName, ServiceCheck }
}

module.exports = httpServices
module.exports.default = httpServices
module.exports.httpServices = httpServices
module.exports.createHttpServices = createHttpServices
module.exports.HttpServices = HttpServices
module.exports.silentLogger = silentLogger
module.exports.HttpClient = HttpClient
module.exports.HttpResponse = HttpResponse
module.exports.HttpService = HttpService
module.exports.AuthError = AuthError
module.exports.BulkheadRejectedError = BulkheadRejectedError
module.exports.CircuitOpenError = CircuitOpenError
module.exports.ClientClosedError = ClientClosedError
module.exports.ConnectionError = ConnectionError
module.exports.DecompressError = DecompressError
module.exports.ForbiddenUrlError = ForbiddenUrlError
module.exports.HttpServicesError = HttpServicesError
module.exports.HttpStatusError = HttpStatusError
module.exports.InvalidOptionsError = InvalidOptionsError
module.exports.InvalidRequestError = InvalidRequestError
module.exports.RateLimitedError = RateLimitedError
module.exports.RequestAbortedError = RequestAbortedError
module.exports.ResponseParseError = ResponseParseError
module.exports.ResponseTooLargeError = ResponseTooLargeError
module.exports.TimeoutError = TimeoutError
module.exports.TlsError = TlsError
module.exports.TransportError = TransportError
module.exports.UnknownServiceError = UnknownServiceError
module.exports.WebhookDeliveryError = WebhookDeliveryError
module.exports.WebhookHandlerError = WebhookHandlerError
module.exports.WebhookVerificationError = WebhookVerificationError
module.exports.isHttpServicesError = isHttpServicesError
module.exports.signWebhook = signWebhook
module.exports.verifyWebhook = verifyWebhook
module.exports.webhookReceiver = webhookReceiver
module.exports.MemoryIdempotencyStore = MemoryIdempotencyStore
module.exports.RedisIdempotencyStore = RedisIdempotencyStore
module.exports.isHttpServicesRequest = isHttpServicesRequest
module.exports.checkServices = checkServices

export = httpServices

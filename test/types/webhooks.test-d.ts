import { expectAssignable, expectError, expectType } from 'tsd'
import Redis from 'ioredis'
import Fastify, { type FastifyRequest } from 'fastify'
import httpServices, {
  createHttpServices, signWebhook, verifyWebhook, webhookReceiver, MemoryIdempotencyStore, RedisIdempotencyStore, WebhookDeliveryError,
  WebhookVerificationError, type DeadLetter, type IdempotencyStore, type ServiceOptions, type WebhookAttempt,
  type PendingWebhook, type WebhookDelivered, type WebhookFailure, type WebhookMeta, type WebhookReceipt
} from '../../index'

// sign and verify
expectType<Record<string, string>>(signWebhook('{}', { secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }))
expectType<Record<string, string>>(signWebhook(Buffer.from('{}'), { secret: ['whsec_a=', 'whsec_b='], id: 'msg_1', timestamp: 1, scheme: 'stripe' }))
expectType<Record<string, string>>(signWebhook('{}', { secret: 's', scheme: 'hmac', header: 'x-hub-signature-256', prefix: 'sha256=' }))
expectError(signWebhook('{}', {}))
expectError(signWebhook('{}', { secret: 's', scheme: 'other' }))
expectError(signWebhook({}, { secret: 's' }))
expectType<unknown>(verifyWebhook('{}', { 'webhook-id': 'x' }, { secret: 's' }))
expectType<unknown>(verifyWebhook(Buffer.from('{}'), new Headers(), { secrets: ['a', 'b'], scheme: 'stripe', tolerance: 60000, now: 0 }))
expectError(verifyWebhook('{}', {}, { secret: 's', tolerance: '5m' }))
const failure = new WebhookVerificationError('x')
expectType<WebhookFailure>(failure.reason)
expectAssignable<WebhookFailure>('signature-mismatch')
expectError<WebhookFailure>('nope')

// the receiver
const app = Fastify()
app.register(webhookReceiver, {
  path: '/hooks',
  secret: 'whsec_abc=',
  handler: async (event, request, meta) => {
    expectType<unknown>(event)
    expectType<FastifyRequest>(request)
    expectType<WebhookMeta>(meta)
    expectType<string | undefined>(meta.id)
  }
})
app.register(webhookReceiver, { path: '/s', secrets: ['a'], scheme: 'stripe', handler: () => {}, store: new MemoryIdempotencyStore(), ttl: 1000, lease: 1000, bodyLimit: 1024, tolerance: 1000 })
expectError(app.register(webhookReceiver, { path: '/hooks', secret: 's' }))
expectAssignable<IdempotencyStore>(new MemoryIdempotencyStore({ now: () => 0 }))
expectAssignable<IdempotencyStore>(new RedisIdempotencyStore({ client: new Redis({ lazyConnect: true }), keyPrefix: 'app:', timeout: 100 }))
expectError(new RedisIdempotencyStore({ keyPrefix: 'app:' }))
// claim answers an owner token with `claimed`; complete and release take it back; plain values or promises
type ClaimAnswer = Awaited<ReturnType<IdempotencyStore['claim']>>
expectAssignable<ClaimAnswer>({ result: 'claimed', token: 't' })
expectAssignable<ClaimAnswer>({ result: 'busy' })
expectError<ClaimAnswer>({ result: 'claimed' })
expectError<ClaimAnswer>('claimed')
expectAssignable<IdempotencyStore>({ claim: () => ({ result: 'done' as const }), complete: (_k: string, _t: string, _ttl: number) => {}, release: (_k: string, _t: string) => {}, settled: () => {} })
expectAssignable<IdempotencyStore>({ claim: async () => ({ result: 'claimed' as const, token: 't' }), complete: async () => {}, release: async () => {}, settled: async () => {} })
expectError<IdempotencyStore>({ claim: async () => 'claimed' as const, complete: async () => {}, release: async () => {}, settled: async () => {} })
expectType<Promise<void>>(new MemoryIdempotencyStore().release('k', 't'))

// the sender
expectAssignable<ServiceOptions>({ baseUrl: 'http://x', webhook: { secret: 'whsec_a=', scheme: 'standard', schedule: [0, 1000], path: '/in' } })
expectError<ServiceOptions>({ baseUrl: 'http://x', webhook: { scheme: 'standard' } })
app.register(httpServices, { services: { partner: { baseUrl: 'http://x', webhook: { secret: 'whsec_a=' } } } })
app.get('/', async () => {
  expectType<Promise<WebhookReceipt>>(app.httpServices.webhooks.send('partner', { type: 'a', data: { b: 1 } }, { id: 'msg_1', path: '/x' }))
  expectType<Promise<WebhookDelivered>>(app.httpServices.webhooks.sendAndWait('partner', { type: 'a' }))
  expectError(app.httpServices.webhooks.send('partner', { data: 1 }))
})
const services = createHttpServices({ services: {} })
expectType<Promise<DeadLetter[]>>(services.webhooks.deadLetters('partner'))
expectType<Promise<WebhookReceipt>>(services.webhooks.replay('msg_1'))
expectType<boolean>(services.webhooks.isDisabled('partner'))
expectType<Promise<void>>(services.webhooks.enable('partner'))
expectType<PendingWebhook[]>(services.webhooks.pending('partner'))
expectType<string>(services.webhooks.pending()[0].body)
// durable deliveries: the same calls with the redis option
const durable = createHttpServices({ redis: 'redis://127.0.0.1:6379', services: { partner: { baseUrl: 'http://x', webhook: { secret: 'whsec_a=' } } } })
expectType<Promise<WebhookReceipt>>(durable.webhooks.send('partner', { type: 'a' }))
const delivery = new WebhookDeliveryError('x')
expectType<WebhookAttempt[]>(delivery.outcomes)
expectType<'rejected' | 'gone' | 'exhausted' | 'disabled' | 'closed'>(delivery.reason)

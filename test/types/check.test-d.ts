import { expectAssignable, expectError, expectType } from 'tsd'
import { checkServices, type CheckReport, type CheckStep, type HttpServicesOptions, type ServiceOptions } from '../../index'

expectType<Promise<CheckReport>>(checkServices({ configFile: 'services.yaml' }))
expectType<Promise<CheckReport>>(checkServices({ services: { a: { baseUrl: 'http://127.0.0.1:1' } } }, { timeout: 3000 }))
expectError(checkServices({ configFile: 'services.yaml' }, { timeout: '3s' }))
expectError(checkServices({ configFile: 'services.yaml' }, { retries: 1 }))

declare const report: CheckReport
expectType<'ok' | 'warn' | 'fail'>(report.status)
expectType<number>(report.timeout)
const step: CheckStep = report.services[0].steps[0]
expectType<'dns' | 'tcp' | 'proxy' | 'tls' | 'h2' | 'oauth2' | 'health'>(step.step)
expectType<'ok' | 'warn' | 'fail' | 'skip'>(step.status)
expectType<string>(step.result)
expectType<number | undefined>(step.daysLeft)

// healthPath is a service option, not one of `defaults`.
expectAssignable<ServiceOptions>({ baseUrl: 'http://x', healthPath: '/healthz' })
expectError<ServiceOptions>({ baseUrl: 'http://x', healthPath: 200 })
expectError<HttpServicesOptions>({ defaults: { healthPath: '/healthz' } })

import { httpServices } from './lib/plugin'

export default httpServices
export { httpServices }
export { createHttpServices, HttpServices, silentLogger } from './lib/services'
export type { CreateHttpServicesOptions, HttpServiceNames, ServiceName } from './lib/services'
export { HttpClient } from './lib/client'
export { HttpResponse } from './lib/response'
export { HttpService } from './lib/service'
export type { ServiceStats } from './lib/service'
export type { CallOptions, CallTimeoutOptions, JsonCallOptions, QueryValue } from './lib/client-types'
export type { MultipartFields, MultipartFile, MultipartValue } from './lib/multipart'
export type * from './lib/config/types'
export type { CallContext, Logger, Next, Policy } from './lib/pipeline/types'
export * from './lib/errors'

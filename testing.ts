export * from './lib/testing'
// undici's types as this package uses them (`mocks.dispatcher`, `mocks.agent`), so a test needs nothing from undici,
// whose top-level copy in an app may be another version (tap brings undici 6).
export type { Dispatcher, MockAgent } from 'undici'

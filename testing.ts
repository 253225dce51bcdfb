export * from './lib/testing'

import t from 'tap'
import { GuardedStore, kCredentials, kPartitionHeader, privateKeyHeaders, type MarkedKey } from '../../lib/cache/guarded-store'
import { MemoryCacheStore, type CacheValue } from '../../lib/cache/undici-cache'

const value = (cc: CacheValue['cacheControlDirectives']): CacheValue => ({
  statusCode: 200, statusMessage: '', headers: {}, cacheControlDirectives: cc, cachedAt: 0, staleAt: 1000, deleteAt: 2000
})

t.test('a shared store refuses answers to credentialed requests unless public, s-maxage or must-revalidate', async (t) => {
  const store = new GuardedStore(new MemoryCacheStore(), 'shared', 0)
  const plain: MarkedKey = { origin: 'http://a', method: 'GET', path: '/', headers: {} }
  const marked: MarkedKey = { ...plain, [kCredentials]: true }
  const keyed: MarkedKey = { ...plain, headers: { 'x-api-key': 'k' } }
  t.ok(store.createWriteStream(plain, value({ 'max-age': 1 })), 'no credentials: stored')
  t.equal(store.takeWriter() !== undefined, true, 'and its writer can be taken once')
  t.equal(store.takeWriter(), undefined)
  t.equal(store.createWriteStream(marked, value({ 'max-age': 1 })), undefined, 'credentials the auth policy adds (the mark)')
  t.equal(store.createWriteStream(keyed, value({ 'max-age': 1 })), undefined, 'an API key header')
  t.ok(store.createWriteStream(marked, value({ public: true, 'max-age': 1 })), 'public allows it')
  t.ok(store.createWriteStream(marked, value({ 's-maxage': 1 })), 's-maxage allows it')
  t.ok(store.createWriteStream(keyed, value({ 'must-revalidate': true, 'max-age': 1 })), 'must-revalidate allows it')
  const own = new GuardedStore(new MemoryCacheStore(), 'private', 0)
  t.ok(own.createWriteStream(marked, value({ 'max-age': 1 })), 'a private store keeps it')
})

t.test('staleIfError keeps an entry in the store until its window ends', async (t) => {
  const seen: CacheValue[] = []
  const inner = { get: () => undefined, delete: () => {}, createWriteStream: (_k: unknown, v: CacheValue) => { seen.push(v); return undefined } }
  const store = new GuardedStore(inner, 'shared', 60_000)
  store.createWriteStream({ origin: 'http://a', method: 'GET', path: '/' }, value({ 'max-age': 1 }))
  t.equal(seen[0].deleteAt, 61_000)
})

t.test('a private store: every entry varies on the partition (null without credentials), none with Set-Cookie', async (t) => {
  const seen: CacheValue[] = []
  const inner = { get: () => undefined, delete: () => {}, createWriteStream: (_k: unknown, v: CacheValue) => { seen.push(v); return undefined } }
  const store = new GuardedStore(inner, 'private', 0)
  const plain: MarkedKey = { origin: 'http://a', method: 'GET', path: '/', headers: {} }
  store.createWriteStream(plain, value({ 'max-age': 1 }))
  store.createWriteStream({ ...plain, headers: { [kPartitionHeader]: 'h1' } }, { ...value({ 'max-age': 1 }), vary: { accept: null } })
  t.same(seen.map((v) => v.vary), [{ [kPartitionHeader]: null }, { accept: null, [kPartitionHeader]: 'h1' }])
  const cookie = { ...value({ 'max-age': 1 }), headers: { 'set-cookie': 'a=1' } }
  t.equal(store.createWriteStream(plain, cookie), undefined, 'Set-Cookie: not stored')
  t.equal(seen.length, 2)
})

t.test('privateKeyHeaders: the credential headers it is given, the token and auth: false each make a partition', async (t) => {
  const names = new Set(['authorization', 'x-user'])
  const plain = { accept: 'a' }
  t.equal(privateKeyHeaders(plain, names, undefined, false), plain, 'no credentials: the headers themselves')
  const user = privateKeyHeaders({ ...plain, 'x-user': 'u1' }, names, undefined, false)
  t.same(Object.keys(user).sort(), ['accept', kPartitionHeader], 'the credential leaves the key')
  t.not(privateKeyHeaders({ ...plain, 'x-user': 'u2' }, names, undefined, false)[kPartitionHeader], user[kPartitionHeader])
  const hashes = [
    privateKeyHeaders(plain, names, 't', false), privateKeyHeaders(plain, names, undefined, true), user
  ].map((h) => h[kPartitionHeader])
  t.equal(new Set(hashes).size, 3)
})

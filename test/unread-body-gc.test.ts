import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { kBound, setup, within } from './helpers/unread-body'

// The garbage-collection path of the unread-body watchdog (lib/unread-body.ts), in a file of its own: it turns on
// --expose-gc at run time and forces collections, which no other test's process should be subject to.

t.test('an unread response that is garbage-collected has its body discarded at once', async (t) => {
  // --expose-gc for this file alone (tap's `node-arg` would apply to every file): set here, then `gc` fetched.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const { api, warnings } = await setup(t, { body: 60000 })
  // The response is dropped as soon as it arrives, its body unread; timeout.body (60 s) cannot be what frees it.
  await (async () => { await api.get('/big?token=abc') })()
  const end = performance.now() + kBound
  while (warnings().length === 0 && performance.now() < end) {
    gc()
    await sleep(20)
  }
  t.match(warnings(), [{ service: 'api', method: 'GET', path: '/big?token=***' }], 'collected and discarded within 3 s')
  t.match(warnings()[0]?.msg, /garbage-collected/)
  t.same(await within(api.getJson('/small'), kBound, 'the second call'), { ok: true })
})


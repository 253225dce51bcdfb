import { gzipSync } from 'node:zlib'
import t from 'tap'
import { createHttpServices, isHttpServicesError, type HttpClient, type HttpServicesOptions } from '../../index'
import { startRawServer, type RawAnswer, type RawServer } from '../helpers/raw-server'
import { startServer } from '../helpers/server'

// Issue 16.1: no upstream answer, on any helper or policy, may crash the process or leave a call unsettled. Every
// helper of every service below meets every answer of the table, from a raw TCP server writing the bytes itself.

const json = '{"ok":true}'
const ok = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n${json}`
const gzipped = gzipSync(Buffer.from(json.repeat(50)))

/** Writes `text`, then ends the socket (`end`), destroys it (`destroy`), resets it (`reset`) or keeps it (`hold`). */
function write (text: string | Buffer, then: 'end' | 'destroy' | 'reset' | 'hold' | 'next' = 'hold'): RawAnswer {
  return (socket) => {
    socket.write(text)
    if (then === 'end') socket.end()
    else if (then === 'destroy') socket.destroy()
    else if (then === 'reset') socket.resetAndDestroy()
    else if (then === 'next') return 'next'
  }
}

const head = (status: string, headers: string[]): string => `HTTP/1.1 ${status}\r\n${headers.map((h) => h + '\r\n').join('')}\r\n`

let server: RawServer

const answers: Record<string, RawAnswer> = {
  ok: write(ok, 'next'),
  'info-flood-then-ok': write(head('103 Early Hints', ['link: </a.css>; rel=preload']).repeat(200) + ok, 'next'),
  'info-flood-forever': (socket) => {
    socket.write(head('103 Early Hints', ['link: </a.css>; rel=preload']))
    server.every(socket, 50, () => socket.write(head('103 Early Hints', ['link: </a.css>; rel=preload'])))
  },
  'info-then-204-with-length': write(head('103 Early Hints', []) +
    head('204 No Content', ['content-length: 7']), 'next'),
  'info-then-reset': write(head('102 Processing', []).repeat(3), 'destroy'),
  'unasked-100-continue': write(head('100 Continue', []) + ok, 'next'),
  '204-with-length': write(head('204 No Content', ['content-length: 13']), 'next'),
  '304-with-length': write(head('304 Not Modified', ['etag: "a"', 'content-length: 13']), 'next'),
  '304-with-length-gzip': write(head('304 Not Modified', ['content-encoding: gzip', 'content-length: 40']), 'next'),
  '204-with-a-body': write(head('204 No Content', ['content-length: 5']) + 'hello', 'next'),
  '205-with-length': write(head('205 Reset Content', ['content-length: 13']), 'next'),
  'head-answered-with-a-chunked-body': write(head('200 OK', ['content-type: application/json', 'transfer-encoding: chunked']) +
    `${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`, 'next'),
  'length-shorter-than-body': write(head('200 OK', ['content-type: application/json', 'content-length: 5']) + json, 'next'),
  'length-longer-than-body-then-end': write(head('200 OK', ['content-type: application/json', 'content-length: 40']) + json, 'end'),
  'length-longer-than-body-then-hold': write(head('200 OK', ['content-type: application/json', 'content-length: 40']) + json),
  'error-status-length-longer-then-end': write(head('503 Busy', ['content-type: text/plain', 'content-length: 100']) + 'busy', 'end'),
  'error-status-reset-mid-chunk': write(head('500 Oops', ['transfer-encoding: chunked']) + '10\r\nabc', 'reset'),
  'reset-before-status-line': (socket) => { socket.destroy() },
  'rst-before-status-line': (socket) => { socket.resetAndDestroy() },
  'reset-mid-status-line': write('HTTP/1.1 20', 'destroy'),
  'reset-mid-headers': write('HTTP/1.1 200 OK\r\ncontent-type: appl', 'destroy'),
  'rst-mid-headers': write('HTTP/1.1 200 OK\r\ncontent-type: appl', 'reset'),
  'reset-after-headers': write(head('200 OK', ['content-type: application/json', `content-length: ${json.length}`]), 'destroy'),
  'rst-after-headers': write(head('200 OK', ['content-type: application/json', `content-length: ${json.length}`]), 'reset'),
  'reset-mid-body': write(head('200 OK', ['content-type: application/json', `content-length: ${json.length}`]) + json.slice(0, 4), 'destroy'),
  'rst-mid-body': write(head('200 OK', ['content-type: application/json', `content-length: ${json.length}`]) + json.slice(0, 4), 'reset'),
  'reset-mid-chunk': write(head('200 OK', ['content-type: application/json', 'transfer-encoding: chunked']) + 'b\r\n{"o', 'destroy'),
  'rst-mid-chunk': write(head('200 OK', ['content-type: application/json', 'transfer-encoding: chunked']) + 'b\r\n{"o', 'reset'),
  'bad-chunk-size': write(head('200 OK', ['transfer-encoding: chunked']) + 'zz\r\nabc\r\n', 'hold'),
  // The body fails in the same read as the headers came in: before anybody can listen to it.
  'error-status-bad-chunk-size': write(head('500 Oops', ['transfer-encoding: chunked']) + 'zz\r\nabc\r\n', 'hold'),
  'redirect-bad-chunk-size': write(head('302 Found', ['location: /ok', 'transfer-encoding: chunked']) + 'zz\r\n', 'hold'),
  'garbage-status-code': write('HTTP/1.1 abc Nope\r\ncontent-length: 0\r\n\r\n', 'hold'),
  'not-http-at-all': write('SSH-2.0-OpenSSH_9.6\r\n\r\n', 'hold'),
  'status-999': write(head('999 Odd', ['content-length: 2']) + '{}', 'next'),
  'status-line-only-then-end': write('HTTP/1.1 200 OK\r\n', 'end'),
  'gzip-corrupt': write(head('200 OK', ['content-type: application/json', 'content-encoding: gzip', 'content-length: 11']) + 'not gzip!!!', 'next'),
  'gzip-corrupt-error-status': write(head('502 Bad', ['content-encoding: gzip', 'content-length: 11']) + 'not gzip!!!', 'next'),
  'gzip-truncated': write(Buffer.concat([Buffer.from(head('200 OK', ['content-type: application/json', 'content-encoding: gzip',
    `content-length: ${gzipped.length}`])), gzipped.subarray(0, 20)]), 'end'),
  'gzip-reset-mid-body': write(Buffer.concat([Buffer.from(head('200 OK', ['content-encoding: br', 'transfer-encoding: chunked'])),
    Buffer.from('20\r\n'), Buffer.alloc(10, 1)]), 'reset'),
  // Slower than the hedge delay: the hedged service sends a second attempt, and one of the two answers loses.
  'slow-304-with-length': (socket) => {
    server.after(socket, 40, () => socket.write(head('304 Not Modified', ['content-length: 13'])))
    return 'next'
  },
  'slow-error-status-reset-mid-body': (socket) => {
    server.after(socket, 40, () => {
      socket.write(head('503 Busy', ['content-length: 100']) + 'bu')
      socket.resetAndDestroy()
    })
  },
  // The hedged service holds the first 503 while its hedge runs: that body breaks off with nobody reading it.
  'slow-error-status-length-longer-then-end': (socket) => {
    server.after(socket, 40, () => socket.end(head('503 Busy', ['content-length: 100']) + 'bu'))
  },
  'slow-reset-mid-body': (socket) => {
    server.after(socket, 40, () => {
      socket.write(head('200 OK', ['content-type: application/json', `content-length: ${json.length}`]) + json.slice(0, 4))
      socket.destroy()
    })
  },
  'redirect-with-short-body': write(head('302 Found', ['location: /reset-mid-body', 'content-length: 40']) + 'moved', 'end'),
  'redirect-to-304': write(head('307 Temporary Redirect', ['location: /304-with-length', 'content-length: 5']) + 'moved', 'next'),
  'redirect-loop': write(head('302 Found', ['location: /redirect-loop', 'content-length: 0']), 'next')
}

/** What every helper does with an answer: a value, or a library error. A response's body is read too. */
const helpers: Record<string, (api: HttpClient, path: string) => Promise<unknown>> = {
  get: async (api, path) => await (await api.get(path)).text(),
  head: async (api, path) => (await api.head(path)).status,
  'stream (body never read)': async (api, path) => (await api.stream('GET', path)).status,
  'stream (body dumped)': async (api, path) => { await (await api.stream('GET', path)).dump() },
  getJson: async (api, path) => await api.getJson(path),
  postJson: async (api, path) => await api.postJson(path, { a: 1 }),
  putJson: async (api, path) => await api.putJson(path, { a: 1 }),
  deleteJson: async (api, path) => await api.deleteJson(path),
  'request without throwHttpErrors': async (api, path) => {
    const res = await api.request('GET', path, { throwHttpErrors: false })
    return Buffer.from(await res.arrayBuffer()).length
  }
}

const kSettleWithin = 10000

function brief (err: unknown): string {
  const e = err as { name?: string, code?: string, message?: string } | null
  return `${e?.name ?? typeof err} ${e?.code ?? ''}: ${e?.message ?? String(err)}`
}

/** `'hung'` when `promise` did not settle within `ms`. */
async function settle (promise: Promise<unknown>, ms: number): Promise<{ value: unknown } | { error: unknown } | 'hung'> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(resolve, ms, 'hung') })
  try {
    return await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), hung])
  } finally {
    clearTimeout(timer)
  }
}

t.test('every helper settles on every odd answer, with a value or a library error, and the process keeps running', async (t) => {
  const crashes: unknown[] = []
  const onCrash = (err: unknown): void => { crashes.push(err) }
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
  t.teardown(() => {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
  })

  server = await startRawServer((socket, req) => {
    const answer = answers[req.path.slice(1)]
    if (answer === undefined) {
      socket.destroy()
      return
    }
    return answer(socket, req)
  })
  const common = { baseUrl: server.url, breaker: false, timeout: { headers: 500, body: 500 } }
  const services = createHttpServices({
    closeTimeout: 500,
    services: {
      plain: { ...common, retry: false },
      passthrough: { ...common, retry: false, decompress: false },
      retries: { ...common, retry: { attempts: 2, baseDelay: 5, budget: false } },
      // Hedges spend the retry budget: without one, every slow answer below is hedged.
      hedged: { ...common, retry: { attempts: 1, baseDelay: 5, budget: false }, hedge: { delay: 20, maxHedges: 1 } },
      redirects: { ...common, retry: false, followRedirects: 3 },
      fallback: { ...common, retry: false, fallback: () => ({ from: 'fallback' }) }
    }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => {
    await services.close()
    await server.close()
  })

  // A few answers at a time: the slow ones (timeouts) overlap. What is thrown unheard is told per batch.
  const names = Object.keys(answers)
  for (let i = 0; i < names.length; i += 4) {
    const batch = names.slice(i, i + 4)
    const outcomes: string[] = []
    await Promise.all(batch.flatMap((name) => ['plain', 'passthrough', 'retries', 'hedged', 'redirects', 'fallback'].flatMap((service) =>
      Object.entries(helpers).map(async ([helper, call]) => {
        const label = `${service} ${helper} /${name}`
        const result = await settle(call(services.client(service), `/${name}`), kSettleWithin)
        if (result === 'hung') outcomes.push(`${label}: did not settle within ${kSettleWithin} ms`)
        else if ('error' in result && !isHttpServicesError(result.error)) {
          outcomes.push(`${label}: rejected with a foreign error ${brief(result.error)}`)
        }
      }))))
    // An unheard body fails after its call resolved (undici checks the length at the end): give it time to.
    await new Promise((resolve) => setTimeout(resolve, 50))
    const answered = batch.map((name) => `/${name}`).join(', ')
    t.same(outcomes, [], `${answered}: every call settled with a value or a library error`)
    t.same(crashes.map(brief), [], `${answered}: nothing was thrown unheard`)
    crashes.length = 0
  }
})

t.test('a 204 or 304 with a content-length is a whole, empty answer on every helper', async (t) => {
  const crashes: unknown[] = []
  const onCrash = (err: unknown): void => { crashes.push(err) }
  process.on('uncaughtException', onCrash)
  t.teardown(() => process.off('uncaughtException', onCrash))
  // What plain node:http sends for a 304 to a conditional GET: the length of the representation it stands for.
  const upstream = await startServer((req, res) => {
    res.writeHead(req.url === '/204' ? 204 : 304, { etag: '"a"', 'content-length': '13' })
    res.end()
  })
  const services = createHttpServices({ services: { up: { baseUrl: upstream.url, retry: false } } })
  await services.open()
  t.teardown(async () => {
    await services.close()
    await upstream.close()
  })
  const up = services.client('up')
  const read = async (body: AsyncIterable<unknown>): Promise<number> => {
    let size = 0
    for await (const chunk of body) size += (chunk as Buffer).length
    return size
  }
  for (const path of ['/304', '/204', '/304']) {
    const outcome = await settle(Promise.all([
      up.getJson(path),
      up.deleteJson(path),
      up.get(path).then(async (res) => [res.status, await res.text()]),
      up.get(path).then(async (res) => await read(res.body)),
      up.stream('GET', path).then(async (res) => await read(res.body)),
      up.request('GET', path, { throwHttpErrors: false }).then(async (res) => (await res.arrayBuffer()).byteLength)
    ]), kSettleWithin)
    const status = Number(path.slice(1))
    t.same(outcome, { value: [undefined, undefined, [status, ''], 0, 0, 0] }, `${path}: every helper gets an empty body`)
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(crashes.map(brief), [], 'nothing was thrown unheard')
})

t.test('an error answer a hedged *Json call holds while its hedge runs may break off unheard', async (t) => {
  const crashes: unknown[] = []
  const onCrash = (err: unknown): void => { crashes.push(err) }
  process.on('uncaughtException', onCrash)
  t.teardown(() => process.off('uncaughtException', onCrash))
  let n = 0
  const upstream = await startRawServer((socket) => {
    if (++n === 1) {
      // Answered after the hedge went out: the 503 waits for the hedge's answer, and its body breaks off meanwhile.
      upstream.after(socket, 60, () => {
        socket.write(head('503 Busy', ['content-length: 100']) + 'bu')
        upstream.after(socket, 20, () => socket.destroy())
      })
      return
    }
    upstream.after(socket, 300, () => socket.write(ok))
  })
  const services = createHttpServices({
    services: { up: { baseUrl: upstream.url, breaker: false, retry: { attempts: 0, budget: false }, hedge: { delay: 20 } } }
  } as HttpServicesOptions)
  await services.open()
  t.teardown(async () => {
    await services.close()
    await upstream.close()
  })
  t.same(await settle(services.client('up').getJson('/x'), kSettleWithin), { value: { ok: true } }, 'the hedge answered')
  t.equal(n, 2, 'a hedge was sent')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(crashes.map(brief), [], 'nothing was thrown unheard')
})

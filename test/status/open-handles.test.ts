import { spawn } from 'node:child_process'
import { get as httpGet } from 'node:http'
import Fastify from 'fastify'
import httpServices from '../../index'
import { sendJson, startServer } from '../helpers/server'

/**
 * With the status page open (an events stream connected, the JSON read, calls counted), `app.close()` ends the
 * stream, and the process exits by itself: no socket, timer or subscription of the page outlives the app.
 */
async function scenario (): Promise<void> {
  const upstream = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  const app = Fastify()
  await app.register(httpServices, { statusPage: true, services: { api: { baseUrl: upstream.url } } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  await (await fetch(`${base}/_services.json`)).json()
  let events = 0
  const ended = new Promise<void>((resolve, reject) => {
    const req = httpGet(`${base}/_services/events`, (res) => {
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { events += chunk.split('data: ').length - 1 })
      res.on('end', resolve)
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  for (let i = 0; i < 20; i++) await app.httpServices.client('api').getJson('/ok')
  while (events < 2) await new Promise((resolve) => setTimeout(resolve, 20))
  const start = performance.now()
  await app.close()
  await ended
  process.stdout.write(`closed with the stream open in ${Math.round(performance.now() - start)} ms\n`)
  await upstream.close()
  process.stdout.write('scenario done\n')
  setTimeout(() => { process.stderr.write(`still open: ${JSON.stringify(process.getActiveResourcesInfo())}\n`) }, 1000).unref()
}

async function parent (): Promise<void> {
  const { default: t } = await import('tap')
  t.test('an open status page leaves nothing behind: the process exits by itself after app.close()', async (t) => {
    const child = spawn(process.execPath, ['--import', 'tsx', __filename], {
      env: { ...process.env, HTTP_SERVICES_STATUS_PAGE_CHILD: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    t.teardown(() => clearTimeout(killer))
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.once('exit', (c, s) => resolve([c, s]))
    })
    t.match(stdout, /scenario done/, 'the scenario ran to its end')
    t.equal(signal, null, 'the child was not killed: it exited on its own')
    t.equal(code, 0, `exit code 0${stderr !== '' ? `; stderr: ${stderr}` : ''}`)
    t.notMatch(stderr, /still open/, 'nothing was still open a second after close')
  })
}

if (process.env.HTTP_SERVICES_STATUS_PAGE_CHILD === '1') {
  scenario().catch((err) => {
    process.stderr.write(`scenario failed: ${String(err?.stack ?? err)}\n`)
    process.exitCode = 1
  })
} else {
  void parent()
}

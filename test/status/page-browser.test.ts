import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import httpServices from '../../index'
import { inCi } from '../helpers/interop'
import { sendJson, startServer } from '../helpers/server'
import { waitUntil } from '../helpers/wait'

// The page in a real headless Chromium (Debian's `chromium`, which .ci/run installs): it loads under its own CSP
// without a console error, shows a row per service, and follows a breaker opening and closing on a real upstream.

const kChromium = '/usr/bin/chromium'
const kArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync']
const kGreen = 'rgb(26, 127, 55)'
const kRed = 'rgb(207, 34, 46)'

let skip: string | false = false
if (!existsSync(kChromium)) {
  const how = `${kChromium} is missing: \`sudo apt-get install -y --no-install-recommends chromium\` runs the status page's browser test`
  if (inCi) t.fail(`${how}. CI=true, so it must run (.ci/run installs it)`)
  skip = how
}

/** An element's computed background colour: runs in the page (serialized there, so it uses nothing from here). */
function backgroundOf (el: unknown): string {
  return (globalThis as unknown as { getComputedStyle: (e: unknown) => { backgroundColor: string } }).getComputedStyle(el).backgroundColor
}

/** A page of `context` whose console errors, uncaught errors and CSP violations are collected in `problems`. */
async function watchedPage (context: BrowserContext, problems: string[]): Promise<Page> {
  const page = await context.newPage()
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  // Chromium logs a violation to the console too; this names it even if it did not.
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (e) =>
    console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))`)
  return page
}

t.test('the page in Chromium: a row per service, a breaker turning red on an outage and green after it', { skip, timeout: 40_000 }, async (t) => {
  let down = false
  const upstream = await startServer((_req, res) => sendJson(res, down ? 503 : 200, { ok: !down }))
  t.teardown(async () => await upstream.close())
  const app = Fastify()
  await app.register(httpServices, {
    statusPage: true,
    services: {
      payments: { baseUrl: upstream.url, retry: false, breaker: { minimumRequests: 3, resetAfter: 500, closeAfter: 1 } },
      catalog: { baseUrl: upstream.url, retry: false, bulkhead: { maxConcurrent: 4 }, cache: true }
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const { port } = app.server.address() as { port: number }
  const url = `http://127.0.0.1:${port}/_services`

  const profile = mkdtempSync(join(tmpdir(), 'fhs-chromium-'))
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  const context = await chromium.launchPersistentContext(profile, { executablePath: kChromium, args: kArgs, timeout: 15_000 })
  t.teardown(async () => await context.close())
  const problems: string[] = []
  const page = await watchedPage(context, problems)

  const payments = app.httpServices.client('payments')
  for (let i = 0; i < 5; i++) await payments.getJson('/ok')
  await app.httpServices.client('catalog').getJson('/ok')
  await page.goto(url, { timeout: 10_000 })
  await page.waitForSelector('#conn.live', { timeout: 5000 })
  t.same(await page.$$eval('tr[data-service]', (rows) => rows.map((r) => r.getAttribute('data-service'))), ['payments', 'catalog'],
    'a row per service')
  const chip = 'tr[data-service="payments"] td.breaker .chip'
  await page.waitForSelector(`${chip}[data-state="closed"]`, { timeout: 3000 })
  t.equal(await page.$eval(chip, backgroundOf), kGreen, 'closed: green')
  t.equal(await page.$eval('tr[data-service="catalog"] td.bulkhead', (el) => el.textContent), '0/4 · 0 queued')

  // The outage: the upstream answers 503 until the breaker opens.
  down = true
  const breaker = (): string => (app.httpServices.stats().payments.breaker as { state: string }).state
  for (let i = 0; i < 20 && breaker() !== 'open'; i++) await payments.getJson('/ok').catch(() => {})
  t.equal(breaker(), 'open', 'the breaker opened')
  await page.waitForSelector(`${chip}[data-state="open"]`, { timeout: 2000 })
  t.equal(await page.$eval(chip, backgroundOf), kRed, 'open within 2 s: red')
  t.not(await page.$eval('tr[data-service="payments"] td.errors', (el) => el.textContent), '0.0 %', 'the failures show')

  // Recovery: the upstream answers again; once the breaker half-opens, a probe closes it.
  down = false
  await waitUntil('the breaker closed again', () => {
    if (breaker() === 'closed') return true
    payments.getJson('/ok').catch(() => {})
    return false
  }, 10_000, 100)
  await page.waitForSelector(`${chip}[data-state="closed"]`, { timeout: 2000 })
  t.equal(await page.$eval(chip, backgroundOf), kGreen, 'closed within 2 s: green again')
  t.same(problems, [], 'no console error, uncaught error or CSP violation')
})

t.test('when the events fail the page polls the JSON', { skip, timeout: 30_000 }, async (t) => {
  const upstream = await startServer((_req, res) => sendJson(res, 200, { ok: true }))
  t.teardown(async () => await upstream.close())
  const app = Fastify()
  await app.register(httpServices, { statusPage: { path: '/ops' }, services: { users: { baseUrl: upstream.url } } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const { port } = app.server.address() as { port: number }
  const profile = mkdtempSync(join(tmpdir(), 'fhs-chromium-'))
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  const context = await chromium.launchPersistentContext(profile, { executablePath: kChromium, args: kArgs, timeout: 15_000 })
  t.teardown(async () => await context.close())
  const problems: string[] = []
  const page = await watchedPage(context, problems)
  // A proxy that refuses event streams, as some do.
  await page.route('**/ops/events', async (route) => await route.fulfill({ status: 502, body: 'no streams here' }))
  let polls = 0
  page.on('request', (r) => { if (r.url().endsWith('/ops.json')) polls++ })
  await page.goto(`http://127.0.0.1:${port}/ops`, { timeout: 10_000 })
  await page.waitForSelector('#conn.polling', { timeout: 5000 })
  await page.waitForSelector('tr[data-service="users"]', { timeout: 5000 })
  await waitUntil('the page polled the JSON twice', () => polls >= 2, 5000, 50)
  t.ok(polls >= 2, `polled ${polls} times`)
  t.same(problems.filter((p) => !/502|EventSource|event-stream/i.test(p)), [], 'no problem but the refused stream')
})

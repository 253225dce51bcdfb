/**
 * The status page: one self-contained HTML document (inline CSS and JS, no CDN, no build step; it works offline) and
 * the Content-Security-Policy it is sent with. The script and the style are constants, so their sha256 hashes are
 * computed once, when this module loads, and the policy allows exactly them: `default-src 'none'`, `connect-src
 * 'self'` for the events and the JSON. The script builds the table with `textContent` and SVG attributes only (no
 * `innerHTML`, no `style` attributes), and finds its JSON and events next to the page's own URL, so one document
 * serves any `path` (and a prefix or proxy in front).
 *
 * Written by hand, in plain ES5-style JS and CSS: a UI framework or chart package would need a bundler or a CDN, both
 * of which the page must do without; a table and two SVG polylines per row do not need one.
 */
import { createHash } from 'node:crypto'

const kStyle = String.raw`
:root { color-scheme: light; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #fff; --head: #f6f8fa;
  --closed: #1a7f37; --half: #bf8700; --open: #cf222e; --calls: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 16px; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 16px; }
.conn { padding: 1px 8px; border-radius: 10px; background: var(--head); color: var(--muted); }
.conn.live { background: #dafbe1; color: var(--closed); }
.conn.polling { background: #fff8c5; color: #7d4e00; }
.conn.offline { background: #ffebe9; color: var(--open); }
#updated { color: var(--muted); margin-left: auto; font-variant-numeric: tabular-nums; }
main { padding: 8px 16px 16px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; vertical-align: middle; }
th { background: var(--head); font-weight: 600; color: var(--muted); position: sticky; top: 0; }
th:first-child, td:first-child, td.breaker, th.breaker { text-align: left; }
td.name { font-weight: 600; }
td.name small { display: block; font-weight: 400; color: var(--muted); }
.muted { color: var(--muted); }
.bad { color: var(--open); font-weight: 600; }
.chip { display: inline-block; margin: 1px 4px 1px 0; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; }
.chip.state-closed { background: var(--closed); }
.chip.state-halfOpen { background: var(--half); }
.chip.state-open { background: var(--open); }
svg.spark { display: inline-block; vertical-align: middle; margin-left: 6px; }
svg.spark polyline { fill: none; stroke-width: 1.5; }
svg.spark .calls { stroke: var(--calls); }
svg.spark .errors { stroke: var(--open); }
svg.spark .latency { stroke: #8250df; }
p.note { color: var(--muted); margin-top: 12px; }
`

const kScript = String.raw`
(function () {
  'use strict';
  var base = location.pathname.replace(/\/+$/, '');
  var tbody = document.getElementById('rows');
  var conn = document.getElementById('conn');
  var updated = document.getElementById('updated');
  var rows = Object.create(null);
  var SVG = 'http://www.w3.org/2000/svg';
  var COLUMNS = ['breaker', 'rps', 'errors', 'p50', 'p99', 'retries', 'hedges', 'bulkhead', 'rate', 'pool', 'cache', 'spark'];
  var LABELS = { closed: 'closed', halfOpen: 'half-open', open: 'open' };

  function clear (node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function text (node, value, cls) { node.textContent = value; node.className = node.dataset.col + (cls ? ' ' + cls : ''); }
  function ms (v) { return v == null ? '–' : v < 10 ? v.toFixed(1) + ' ms' : Math.round(v) + ' ms'; }
  function num (v) { return v < 10 ? v.toFixed(1) : String(Math.round(v)); }
  function host (origin) { return origin.replace(/^[a-z]+:\/\//, ''); }

  function row (name) {
    var r = rows[name];
    if (r) return r;
    var tr = document.createElement('tr');
    tr.dataset.service = name;
    var first = document.createElement('td');
    first.className = 'name';
    first.textContent = name;
    var origins = document.createElement('small');
    first.appendChild(origins);
    tr.appendChild(first);
    r = { tr: tr, origins: origins, cells: {} };
    COLUMNS.forEach(function (col) {
      var td = document.createElement('td');
      td.dataset.col = col;
      td.className = col;
      tr.appendChild(td);
      r.cells[col] = td;
    });
    tbody.appendChild(tr);
    rows[name] = r;
    return r;
  }

  function chip (state, label) {
    var span = document.createElement('span');
    span.className = 'chip state-' + state;
    span.dataset.state = state;
    span.textContent = label;
    return span;
  }

  function breaker (td, b) {
    clear(td);
    if (!b) { td.dataset.state = 'off'; td.className = 'breaker muted'; td.textContent = 'off'; return; }
    td.dataset.state = b.state;
    td.className = 'breaker';
    if (b.upstreams.length > 1) {
      b.upstreams.forEach(function (u) { td.appendChild(chip(u.state, host(u.origin))); });
    } else {
      td.appendChild(chip(b.state, LABELS[b.state] || b.state));
    }
  }

  function polyline (values, max, cls) {
    var line = document.createElementNS(SVG, 'polyline');
    var points = [];
    for (var i = 0; i < values.length; i++) {
      points.push((i * 2) + ',' + (23 - (max > 0 ? values[i] / max : 0) * 21).toFixed(1));
    }
    line.setAttribute('points', points.join(' '));
    line.setAttribute('class', cls);
    return line;
  }

  function spark (series, keys, title) {
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', '100');
    svg.setAttribute('height', '24');
    svg.setAttribute('viewBox', '0 0 120 24');
    svg.setAttribute('preserveAspectRatio', 'none');
    var label = document.createElementNS(SVG, 'title');
    label.textContent = title;
    svg.appendChild(label);
    var max = 0;
    keys.forEach(function (k) { series[k[0]].forEach(function (v) { if (v > max) max = v; }); });
    keys.forEach(function (k) { svg.appendChild(polyline(series[k[0]], max, k[1])); });
    return svg;
  }

  function render (snap) {
    var seen = Object.create(null);
    snap.services.forEach(function (s) {
      seen[s.name] = true;
      var r = row(s.name);
      var c = r.cells;
      r.origins.textContent = s.origins.map(host).join(', ');
      breaker(c.breaker, s.breaker);
      text(c.rps, num(s.requestsPerSecond));
      text(c.errors, (s.errorRate * 100).toFixed(1) + ' %', s.errorRate > 0.05 ? 'bad' : '');
      text(c.p50, ms(s.latency.p50));
      text(c.p99, ms(s.latency.p99));
      text(c.retries, s.retries + (s.retriesRefused > 0 ? ' (' + s.retriesRefused + ' refused)' : ''), s.retriesRefused > 0 ? 'bad' : '');
      text(c.hedges, String(s.hedges));
      text(c.bulkhead, s.bulkhead ? s.bulkhead.active + '/' + s.bulkhead.maxConcurrent + ' · ' + s.bulkhead.queued + ' queued' : '–', s.bulkhead ? '' : 'muted');
      text(c.rate, s.rateLimit ? s.rateLimit.available + '/' + s.rateLimit.capacity : '–', s.rateLimit ? '' : 'muted');
      text(c.pool, s.pool ? s.pool.connected + ' · ' + s.pool.free + ' free · ' + s.pool.pending + ' pending' : '–', s.pool ? '' : 'muted');
      text(c.cache, s.cache ? (s.cache.hitRatio == null ? '–' : (s.cache.hitRatio * 100).toFixed(0) + ' %') : '–', s.cache ? '' : 'muted');
      clear(c.spark);
      if (s.series.requests.length > 0) {
        c.spark.appendChild(spark(s.series, [['requests', 'calls'], ['errors', 'errors']], 'calls (blue) and failures (red) per second'));
        c.spark.appendChild(spark(s.series, [['p99', 'latency']], 'p99 latency per second'));
      }
    });
    Object.keys(rows).forEach(function (name) {
      if (!seen[name]) { tbody.removeChild(rows[name].tr); delete rows[name]; }
    });
    updated.textContent = 'last ' + Math.round(snap.windowSeconds) + ' s · ' + new Date(snap.time).toLocaleTimeString();
  }

  function status (mode) { conn.textContent = mode; conn.className = 'conn ' + mode; }

  var source = null;
  var poller = null;

  function live () {
    source = new EventSource(base + '/events');
    source.onmessage = function (e) { status('live'); render(JSON.parse(e.data)); };
    source.onerror = function () {
      source.close();
      source = null;
      polling();
    };
  }

  function poll () {
    fetch(base + '.json', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) { if (!res.ok) throw new Error('status ' + res.status); return res.json(); })
      .then(function (snap) { status('polling'); render(snap); })
      .catch(function () { status('offline'); });
  }

  // Events failed (a proxy that buffers them, a guard that refuses them): poll the JSON every second, and try the
  // events again now and then.
  function polling () {
    if (poller !== null) return;
    status('polling');
    poll();
    poller = setInterval(poll, 1000);
    setTimeout(function () { clearInterval(poller); poller = null; live(); }, 15000);
  }

  live();
})();
`

const kBody = `<header><h1>HTTP services</h1><span id="conn" class="conn">connecting</span><span id="updated"></span></header>
<main><table>
<thead><tr><th>service</th><th class="breaker">breaker</th><th>req/s</th><th>errors</th><th>p50</th><th>p99</th><th>retries</th><th>hedges</th><th>bulkhead</th><th>rate limit</th><th>pool</th><th>cache hits</th><th>last minute</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<p class="note">Figures over the last minute (calls as the caller sees them: retries, hedges and waits included); breaker, bulkhead, rate limit and pool as they are now.</p></main>`

/** The page, the same for every app. */
export const kStatusPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>HTTP services</title><link rel="icon" href="data:,">
<style>${kStyle}</style></head>
<body>${kBody}<script>${kScript}</script></body></html>
`

const hash = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`

/**
 * The page's Content-Security-Policy: nothing but its own script and style (by hash), requests to its own origin, and
 * the empty `data:` favicon that keeps the browser from asking for /favicon.ico.
 */
export const kStatusPageCsp = [
  "default-src 'none'",
  `script-src ${hash(kScript)}`,
  `style-src ${hash(kStyle)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

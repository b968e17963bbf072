// sluice's live dashboard: asks for the admin key (kept in this tab's sessionStorage),
// polls /admin/dashboard for the points sluice samples, and draws them on canvas.
'use strict';

const KEY = 'sluice.adminKey';
const PALETTE = ['#4e9fe5', '#f0a04b', '#e5534b', '#57ab5a', '#c69026', '#b083f0', '#39c5cf', '#f778ba', '#9ca3ad', '#8ddb8c'];

// Each chart shows fixed series ([key, label]) or every key matching a pattern.
const CHARTS = [
  { id: 'rps', title: 'Requests per second', unit: 'rps', series: [['rps', 'answered'], ['err_rps', 'errors']] },
  { id: 'ttft', title: 'Time to first token', unit: 's', series: [['ttft_p50', 'p50'], ['ttft_p90', 'p90'], ['ttft_p99', 'p99']],
    empty: 'No streamed answers in this window' },
  { id: 'latency', title: 'Request duration', unit: 's', series: [['latency_p50', 'p50'], ['latency_p90', 'p90']] },
  { id: 'slots', title: 'Engine slots in use', unit: 'n', match: /^engine\.(.+)\.busy$/, min: 0,
    maxKey: (p) => sumMatching(p, /^engine\..+\.slots$/) },
  { id: 'queue', title: 'Requests waiting for a slot', unit: 'n', match: /^queue\.(.+)$/ },
  { id: 'gpu_util', title: 'GPU utilization', unit: '%', match: /^gpu\.(\d+)\.util$/, name: (m) => 'GPU ' + m[1], max: 1,
    empty: 'No GPUs: the engines run on the CPU' },
  { id: 'gpu_mem', title: 'GPU memory used', unit: 'bytes', match: /^gpu\.(\d+)\.mem_used$/, name: (m) => 'GPU ' + m[1],
    maxKey: (p) => maxMatching(p, /^gpu\.\d+\.mem_total$/), empty: 'No GPUs' },
  { id: 'gpu_power', title: 'GPU power', unit: 'W', match: /^gpu\.(\d+)\.power$/, name: (m) => 'GPU ' + m[1],
    maxKey: (p) => maxMatching(p, /^gpu\.\d+\.power_limit$/), empty: 'No GPUs' },
  { id: 'cache', title: 'Cache hit rate', unit: '%', series: [['cache_hit', 'hits / lookups']], max: 1,
    empty: 'No cache lookups in this window' },
  { id: 'compress', title: 'Compression savings', unit: '%', series: [['compress_saved', 'prompt tokens removed']], max: 1,
    empty: 'No prompts compressed in this window' },
  { id: 'routes', title: 'Routing mix', unit: 'rps', match: /^route\.(.+)$/, note: 'requests per second by model' },
  { id: 'overflow', title: 'Overflow to the cloud', unit: 'rps', series: [['overflow_rps', 'requests sent to a cloud']] },
  { id: 'cpm', title: 'Cost per million tokens', unit: '$', series: [['cost_per_m', 'hardware cost']],
    empty: 'No tokens in this window' },
  { id: 'savings', title: 'Savings over time', unit: '$', series: [['savings_usd', 'saved vs the reference cloud'], ['cost_usd', 'spent']] },
  { id: 'batch', title: 'Batch lines', unit: 'n', series: [['batch_pending', 'waiting'], ['batch_inflight', 'in flight']] },
];

let points = [];
let interval = 2000;
let timer = null;
const els = {};

function $(id) { return document.getElementById(id); }

function sumMatching(p, re) {
  let s = 0, any = false;
  for (const k in p.v) if (re.test(k)) { s += p.v[k]; any = true; }
  return any ? s : undefined;
}

function maxMatching(p, re) {
  let m;
  for (const k in p.v) if (re.test(k) && (m === undefined || p.v[k] > m)) m = p.v[k];
  return m;
}

function fmt(v, unit) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  switch (unit) {
    case '%': return (v * 100).toFixed(v < 0.1 ? 1 : 0) + '%';
    case 's': return v < 1 ? (v * 1000).toFixed(v < 0.01 ? 1 : 0) + ' ms' : v.toFixed(2) + ' s';
    case '$': return '$' + (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
    case 'bytes': {
      const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return v.toFixed(v >= 10 || i === 0 ? 0 : 1) + ' ' + u[i];
    }
    case 'W': return v.toFixed(0) + ' W';
    case 'rps': return (v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2)) + '/s';
    default: return v >= 10 ? v.toFixed(0) : String(Math.round(v * 100) / 100);
  }
}

function buildCharts() {
  const grid = $('charts');
  for (const c of CHARTS) {
    const card = document.createElement('div');
    card.className = 'card';
    card.innerHTML = '<h2></h2><p class="note"></p><canvas></canvas><div class="legend"></div>';
    card.querySelector('h2').textContent = c.title;
    card.querySelector('.note').textContent = c.note || '';
    const canvas = card.querySelector('canvas');
    canvas.dataset.chart = c.id;
    canvas.dataset.points = '0';
    grid.appendChild(card);
    els[c.id] = { canvas, legend: card.querySelector('.legend'), note: card.querySelector('.note') };
  }
}

// seriesOf lists a chart's series: [{key, label}].
function seriesOf(c) {
  if (c.series) return c.series.map(([key, label]) => ({ key, label }));
  const keys = new Map();
  for (const p of points) {
    for (const k in p.v) {
      const m = c.match.exec(k);
      if (m && !keys.has(k)) keys.set(k, c.name ? c.name(m) : m[1]);
    }
  }
  return [...keys].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }))
    .map(([key, label]) => ({ key, label }));
}

function draw(c) {
  const { canvas, legend } = els[c.id];
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const series = seriesOf(c);
  const last = points[points.length - 1];
  const t1 = last ? last.t : Date.now();
  const t0 = points.length ? Math.min(points[0].t, t1 - 60000) : t1 - 60000;
  let lo = c.min !== undefined ? c.min : 0, hi = c.max !== undefined ? c.max : 0, drawn = 0;
  for (const s of series) {
    for (const p of points) {
      const v = p.v[s.key];
      if (v === undefined) continue;
      drawn++;
      if (c.max === undefined && v > hi) hi = v;
      if (v < lo) lo = v;
    }
  }
  if (c.maxKey && last) {
    const m = c.maxKey(last);
    if (m !== undefined && m > hi) hi = m;
  }
  if (hi <= lo) hi = lo + 1;
  const L = 58, R = 8, T = 8, B = 20;
  const x = (t) => L + (w - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => T + (h - T - B) * (1 - (v - lo) / (hi - lo));
  // Grid and axes.
  g.font = '11px system-ui, sans-serif';
  g.strokeStyle = '#2a333d';
  g.fillStyle = '#8a96a3';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(L, yy); g.lineTo(w - R, yy); g.stroke();
    if (drawn > 0) g.fillText(fmt(v, c.unit), L - 6, yy);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let i = 0; i <= 3; i++) {
    const t = t0 + (t1 - t0) * i / 3;
    g.fillText(new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }),
      Math.min(Math.max(x(t), L + 24), w - R - 24), h - B + 5);
  }
  // Lines, with gaps where a value is missing.
  series.forEach((s, i) => {
    g.strokeStyle = PALETTE[i % PALETTE.length];
    g.lineWidth = 1.8;
    g.beginPath();
    let pen = false;
    for (const p of points) {
      const v = p.v[s.key];
      if (v === undefined) { pen = false; continue; }
      if (pen) g.lineTo(x(p.t), y(v)); else { g.moveTo(x(p.t), y(v)); pen = true; }
    }
    g.stroke();
    // A lone point still shows.
    g.fillStyle = g.strokeStyle;
    const lp = points.filter((p) => p.v[s.key] !== undefined);
    if (lp.length === 1) { g.beginPath(); g.arc(x(lp[0].t), y(lp[0].v[s.key]), 2.5, 0, 2 * Math.PI); g.fill(); }
  });
  if (drawn === 0) {
    g.fillStyle = '#8a96a3';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.font = '13px system-ui, sans-serif';
    g.fillText(c.empty || 'No data in this window', L + (w - L - R) / 2, T + (h - T - B) / 2);
  }
  canvas.dataset.points = String(drawn);
  legend.replaceChildren(...series.map((s, i) => {
    const span = document.createElement('span');
    const sw = document.createElement('i');
    sw.style.background = PALETTE[i % PALETTE.length];
    const now = last ? last.v[s.key] : undefined;
    span.append(sw, s.label + ' ' + fmt(now, c.unit));
    return span;
  }));
}

function latest(key) {
  for (let i = points.length - 1; i >= 0; i--) if (points[i].v[key] !== undefined) return points[i].v[key];
  return undefined;
}

function renderStats() {
  $('stat-rps').textContent = fmt(latest('rps'), 'rps');
  $('stat-ttft').textContent = fmt(latest('ttft_p90'), 's');
  $('stat-cache').textContent = fmt(latest('cache_hit'), '%');
  $('stat-cpm').textContent = fmt(latest('cost_per_m'), '$');
  $('stat-savings').textContent = fmt(latest('savings_usd'), '$');
  const last = points[points.length - 1];
  const tbody = $('engines').querySelector('tbody');
  if (!last) return;
  const names = Object.keys(last.v).map((k) => /^engine\.(.+)\.slots$/.exec(k)).filter(Boolean).map((m) => m[1]).sort();
  let up = 0;
  tbody.replaceChildren(...names.map((n) => {
    const busy = last.v['engine.' + n + '.busy'] || 0, slots = last.v['engine.' + n + '.slots'] || 0;
    const healthy = last.v['engine.' + n + '.healthy'] === 1;
    if (healthy) up++;
    const tr = document.createElement('tr');
    const cells = [n, healthy ? 'up' : 'down', busy + ' / ' + slots];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) td.className = healthy ? 'up' : 'down';
      tr.appendChild(td);
    }
    const td = document.createElement('td');
    td.innerHTML = '<div class="bar"><span></span></div>';
    td.querySelector('span').style.width = (slots ? 100 * busy / slots : 0) + '%';
    tr.appendChild(td);
    return tr;
  }));
  $('stat-engines').textContent = names.length ? up + ' / ' + names.length : '–';
}

function render() {
  for (const c of CHARTS) draw(c);
  renderStats();
}

function setState(text, ok) {
  const s = $('state');
  s.textContent = text;
  s.className = 'state ' + (ok ? 'ok' : 'bad');
}

function showLogin(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(KEY);
  points = [];
  $('board').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  setState('signed out', false);
  $('key').focus();
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return showLogin();
  const since = points.length ? points[points.length - 1].t : 0;
  let res;
  try {
    res = await fetch('/admin/dashboard?since=' + since, { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' });
  } catch (e) {
    setState('sluice is not answering', false);
    timer = setTimeout(poll, interval);
    return;
  }
  if (res.status === 401 || res.status === 403) {
    let msg = 'That key was refused.';
    try { msg = (await res.json()).error.message; } catch (e) { /* keep the default */ }
    return showLogin(msg);
  }
  if (!res.ok) {
    setState('error ' + res.status, false);
    timer = setTimeout(poll, interval);
    return;
  }
  const data = await res.json();
  interval = data.interval_ms || interval;
  points = points.concat(data.points || []);
  if (points.length > 1800) points = points.slice(points.length - 1800);
  $('login').hidden = true;
  $('board').hidden = false;
  $('logout').hidden = false;
  setState('live · every ' + interval / 1000 + ' s', true);
  render();
  timer = setTimeout(poll, interval);
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const k = $('key').value.trim();
  if (!k) return;
  sessionStorage.setItem(KEY, k);
  $('key').value = '';
  poll();
});
$('logout').addEventListener('click', () => showLogin());
window.addEventListener('resize', () => { if (!$('board').hidden) render(); });
buildCharts();
if (sessionStorage.getItem(KEY)) poll(); else showLogin();

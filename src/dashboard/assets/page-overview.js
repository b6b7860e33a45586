// Overview: live headline numbers (polled every 5 s) and charts over 1 h / 24 h / 7 d from
// GET /ui/api/overview. A key session gets its own key's numbers from the same endpoint.

import { api, isAdmin } from './api.js';
import { h, stat, empty, errorBox, code } from './dom.js';
import { lineChart, drawCharts } from './chart.js';
import * as f from './fmt.js';

const RANGES = ['1h', '24h', '7d'];
let range = '1h';

function hitRate(x) {
  const served = x.hits_exact + x.hits_semantic + x.hits_coalesced + x.misses;
  return served ? (x.hits_exact + x.hits_semantic + x.hits_coalesced) / served : null;
}

export async function render(ctx) {
  const { root } = ctx;
  const rangeBar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' });
  const liveBox = h('div', { class: 'stats', testid: 'overview-live' });
  const totalsBox = h('div', { class: 'stats', testid: 'overview-totals' });
  const charts = h('div', { class: 'charts', testid: 'overview-charts' });
  const status = h('span', { class: 'muted small', testid: 'overview-updated' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Overview'), rangeBar),
    h('h2', null, 'Right now ', h('span', { class: 'muted small' }, '(last 60 s, updates every 5 s) '), status),
    liveBox,
    h('h2', { testid: 'totals-title' }, 'Last ' + range),
    totalsBox,
    charts);

  const drawRange = () => {
    rangeBar.replaceChildren(...RANGES.map((r) => h('button', {
      type: 'button', class: 'seg' + (r === range ? ' on' : ''), testid: 'range-' + r,
      'aria-pressed': String(r === range),
      onclick: () => { range = r; drawRange(); root.querySelector('[data-testid="totals-title"]').textContent = 'Last ' + r; load(true); },
    }, r)));
  };
  drawRange();

  let lastSeries = '';
  let busy = false;
  const load = async (forceCharts) => {
    if (busy) return;
    busy = true;
    try {
      const d = await api('/ui/api/overview?range=' + range);
      if (!ctx.alive()) return;
      const l = d.live || {};
      liveBox.replaceChildren(
        stat('live-rps', 'Requests/s', f.rate(l.requests_per_s), l.requests_per_s),
        stat('live-hit-rate', 'Cache hit rate', f.pct(l.hit_rate), l.hit_rate),
        stat('live-p50', 'Latency p50', f.ms(l.p50_ms), l.p50_ms),
        stat('live-p99', 'Latency p99', f.ms(l.p99_ms), l.p99_ms),
        stat('live-errors', 'Errors', f.count(l.errors), l.errors));
      const t = d.totals || {};
      const hr = t.hit_rate !== undefined ? t.hit_rate : hitRate(t);
      totalsBox.replaceChildren(
        stat('stat-requests', 'Requests', f.count(t.requests), t.requests),
        stat('stat-hit-rate', 'Cache hit rate', f.pct(hr), hr,
          `exact ${f.count(t.hits_exact)} · semantic ${f.count(t.hits_semantic)} · coalesced ${f.count(t.hits_coalesced)}`),
        stat('stat-tokens-in', 'Tokens in', f.count(t.tokens_in), t.tokens_in),
        stat('stat-tokens-out', 'Tokens out', f.count(t.tokens_out), t.tokens_out),
        stat('stat-spend', 'Spend', f.usd(t.cost_usd), t.cost_usd),
        stat('stat-saved', 'Saved by the cache', f.usd(t.saved_usd), t.saved_usd),
        stat('stat-p50', 'Latency p50', f.ms(t.p50_ms), t.p50_ms, 'p99 ' + f.ms(t.p99_ms)),
        stat('stat-ttft', 'Time to first token p50', f.ms(t.ttft_p50_ms), t.ttft_p50_ms),
        stat('stat-errors', 'Errors', f.count(t.errors), t.errors));
      status.textContent = 'updated ' + f.time(Date.now());
      // Charts are redrawn only when their data changed (keeps the hover readout steady).
      const sig = JSON.stringify(d.series);
      if (forceCharts || sig !== lastSeries) {
        lastSeries = sig;
        drawChartsFor(charts, d);
      }
    } catch (e) {
      if (ctx.alive()) liveBox.replaceChildren(errorBox(e));
    } finally {
      busy = false;
    }
  };
  await load(true);
  ctx.every(5000, () => load(false));
}

function drawChartsFor(charts, d) {
  const series = d.series || [];
  const total = d.totals ? d.totals.requests : 0;
  if (!series.length || !total) {
    charts.replaceChildren(empty('overview-empty', 'No requests in this range yet.',
      'Point an OpenAI client at this gateway (base URL ', code(location.origin + '/v1'), ') and send a chat completion; ',
      isAdmin() ? h('span', null, 'create a key for it on the ', h('a', { href: '#/keys' }, 'Keys'), ' page.') : 'it will show here within seconds.'));
    return;
  }
  const b = d.bucket_seconds || 60;
  const times = series.map((p) => p.t);
  const xf = (t) => f.axisTime(t, b);
  const get = (k) => series.map((p) => (p[k] === undefined ? null : p[k]));
  const perS = (k) => series.map((p) => p[k] / b);
  charts.replaceChildren(
    lineChart({ title: 'Requests/s', testid: 'chart-requests', times, xFormat: xf, yFormat: f.rate,
      series: [{ name: 'requests', values: perS('requests'), cls: 's1' }, { name: 'errors', values: perS('errors'), cls: 's4' }] }),
    lineChart({ title: 'Cache hit rate by kind', testid: 'chart-hit-rate', times, xFormat: xf, yFormat: f.pct,
      series: ['hits_exact', 'hits_semantic', 'hits_coalesced'].map((k, i) => ({
        name: k.replace('hits_', ''), cls: ['s2', 's3', 's5'][i],
        values: series.map((p) => {
          const served = p.hits_exact + p.hits_semantic + p.hits_coalesced + p.misses;
          return served ? p[k] / served : null;
        }),
      })) }),
    lineChart({ title: 'Tokens', testid: 'chart-tokens', times, xFormat: xf, yFormat: f.count, integer: true,
      series: [{ name: 'in', values: get('tokens_in'), cls: 's1' }, { name: 'out', values: get('tokens_out'), cls: 's3' }] }),
    lineChart({ title: 'Spend and saved (USD)', testid: 'chart-spend', times, xFormat: xf, yFormat: f.usd,
      series: [{ name: 'spend', values: get('cost_usd'), cls: 's4' }, { name: 'saved', values: get('saved_usd'), cls: 's2' }] }),
    lineChart({ title: 'Latency', testid: 'chart-latency', times, xFormat: xf, yFormat: f.ms,
      series: [{ name: 'p50', values: get('p50_ms'), cls: 's1' }, { name: 'p99', values: get('p99_ms'), cls: 's4' }, { name: 'TTFT p50', values: get('ttft_p50_ms'), cls: 's3' }] }),
    lineChart({ title: 'Errors', testid: 'chart-errors', times, xFormat: xf, yFormat: f.count, integer: true,
      series: [{ name: 'errors', values: get('errors'), cls: 's4' }] }));
  drawCharts(charts);
}

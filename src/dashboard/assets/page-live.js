// Live: a tail of requests as they finish, over Server-Sent Events from /ui/api/tail (the
// server sends the last 50 first). Never shows prompt text. Closes the stream when left.

import { h, empty, code } from './dom.js';
import * as f from './fmt.js';

const MAX_ROWS = 200;

function cacheClass(c) {
  if (!c) return '';
  if (c.startsWith('hit')) return 'ok';
  if (c === 'miss') return 'muted';
  return '';
}

export async function render(ctx) {
  const { root } = ctx;
  const state = h('span', { class: 'pill', testid: 'tail-status' }, 'connecting…');
  const paused = h('input', { type: 'checkbox', testid: 'tail-pause' });
  const tbody = h('tbody', { testid: 'tail-body' });
  const placeholder = empty('tail-empty', 'Waiting for requests…',
    'Send a request to ', code(location.origin + '/v1/chat/completions'), ' and it appears here as soon as it finishes.');
  const table = h('div', { class: 'card' }, h('div', { class: 'table-wrap' }, h('table', { class: 'tail' },
    h('thead', null, h('tr', null, ['Time', 'Key', 'Model', 'Deployment', 'Cache', 'Status', 'Tokens', 'Cost', 'Latency'].map((c) => h('th', null, c)))),
    tbody)));
  table.hidden = true;
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Live requests'),
    h('div', { class: 'row' }, state, h('label', { class: 'inline' }, paused, ' pause'))), placeholder, table);

  const buffered = [];
  const add = (r) => {
    const tr = h('tr', { testid: 'tail-row', 'data-request-id': r.request_id, 'data-cache': r.cache || '', 'data-model': r.model || '' },
      h('td', { 'data-label': 'Time' }, f.time(r.time_ms)),
      h('td', { 'data-label': 'Key' }, r.key_alias || h('code', { class: 'small' }, r.key_id || '–')),
      h('td', { 'data-label': 'Model' }, r.model || '–'),
      h('td', { 'data-label': 'Deployment', class: 'small' }, r.deployment || '–'),
      h('td', { 'data-label': 'Cache', class: cacheClass(r.cache) }, r.cache || '–'),
      h('td', { 'data-label': 'Status', class: r.status >= 400 ? 'bad' : '' }, String(r.status)),
      h('td', { 'data-label': 'Tokens', class: 'num' }, f.count(r.tokens_in) + ' / ' + f.count(r.tokens_out)),
      h('td', { 'data-label': 'Cost', class: 'num' }, f.usd(r.cost_usd)),
      h('td', { 'data-label': 'Latency', class: 'num' }, f.ms(r.latency_ms)));
    tbody.prepend(tr);
    while (tbody.childElementCount > MAX_ROWS) tbody.lastElementChild.remove();
    placeholder.hidden = true;
    table.hidden = false;
  };
  paused.addEventListener('change', () => {
    if (!paused.checked) while (buffered.length) add(buffered.shift());
  });

  const es = new EventSource('/ui/api/tail');
  ctx.onCleanup(() => es.close());
  es.addEventListener('open', () => { state.textContent = 'live'; state.className = 'pill ok'; });
  es.addEventListener('error', () => {
    state.textContent = es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…';
    state.className = 'pill bad';
  });
  es.addEventListener('request', (ev) => {
    let r;
    try { r = JSON.parse(ev.data); } catch { return; }
    if (paused.checked) { buffered.push(r); if (buffered.length > MAX_ROWS) buffered.shift(); } else add(r);
  });
}

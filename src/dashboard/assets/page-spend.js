// Spend: by key, user, model or day over a date range, with what the cache saved beside it,
// and a CSV download of the same rows (GET /ui/api/spend and /ui/api/spend.csv).

import { api } from './api.js';
import { h, empty, errorBox } from './dom.js';
import * as f from './fmt.js';

let groupBy = 'model';

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

export async function render(ctx) {
  const { root } = ctx;
  const by = h('select', { testid: 'spend-group-by', id: 'spend-by' },
    [['key', 'key'], ['user', 'user'], ['model', 'model'], ['day', 'day']].map(([v, t]) => h('option', { value: v, selected: v === groupBy }, t)));
  const now = new Date();
  const from = h('input', { type: 'date', testid: 'spend-from', value: isoDay(new Date(now.getTime() - 29 * 86400000)) });
  const to = h('input', { type: 'date', testid: 'spend-to', value: isoDay(now) });
  const csv = h('a', { class: 'btn', testid: 'spend-csv', download: 'sluice-spend.csv' }, 'Download CSV');
  const table = h('div', { testid: 'spend-table' });
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Spend')),
    h('form', { class: 'row filters', testid: 'spend-filters' },
      h('label', { for: 'spend-by' }, 'By'), by, h('label', null, 'From'), from, h('label', null, 'To'), to, csv),
    table);

  const query = () => {
    const q = new URLSearchParams({ group_by: by.value });
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    return q.toString();
  };
  const load = async () => {
    groupBy = by.value;
    csv.setAttribute('href', '/ui/api/spend.csv?' + query());
    try {
      const d = await api('/ui/api/spend?' + query());
      if (!ctx.alive()) return;
      const rows = d.rows || [];
      if (!rows.length) {
        table.replaceChildren(empty('spend-empty', 'No spend in this range.',
          'Requests through the gateway are priced as they finish; widen the dates or send a request.'));
        return;
      }
      const key = by.value;
      const tot = rows.reduce((a, r) => ({
        requests: a.requests + (r.requests || 0), spend: a.spend + (r.spend_usd || 0), saved: a.saved + (r.saved_usd || 0),
        pin: a.pin + (r.prompt_tokens || 0), pout: a.pout + (r.completion_tokens || 0), hits: a.hits + (r.cache_hits || 0),
      }), { requests: 0, spend: 0, saved: 0, pin: 0, pout: 0, hits: 0 });
      table.replaceChildren(h('div', { class: 'card' }, h('div', { class: 'table-wrap' }, h('table', null,
        h('thead', null, h('tr', null, [key[0].toUpperCase() + key.slice(1), 'Requests', 'Cache hits', 'Tokens in', 'Tokens out', 'Spend', 'Saved by cache']
          .map((c, i) => h('th', { class: i ? 'num' : null }, c)))),
        h('tbody', null, rows.map((r) => h('tr', { testid: 'spend-row', 'data-group': r[key] },
          h('td', { 'data-label': key }, r[key] === '' || r[key] === null || r[key] === undefined ? h('span', { class: 'muted' }, '(none)') : r[key]),
          h('td', { class: 'num', 'data-label': 'Requests' }, f.count(r.requests)),
          h('td', { class: 'num', 'data-label': 'Cache hits' }, f.count(r.cache_hits)),
          h('td', { class: 'num', 'data-label': 'Tokens in' }, f.count(r.prompt_tokens)),
          h('td', { class: 'num', 'data-label': 'Tokens out' }, f.count(r.completion_tokens)),
          h('td', { class: 'num', 'data-label': 'Spend', testid: 'spend-usd', 'data-value': r.spend_usd }, f.usd(r.spend_usd)),
          h('td', { class: 'num ok', 'data-label': 'Saved', testid: 'saved-usd', 'data-value': r.saved_usd }, f.usd(r.saved_usd))))),
        h('tfoot', null, h('tr', null, h('th', null, 'Total'), h('th', { class: 'num' }, f.count(tot.requests)),
          h('th', { class: 'num' }, f.count(tot.hits)), h('th', { class: 'num' }, f.count(tot.pin)), h('th', { class: 'num' }, f.count(tot.pout)),
          h('th', { class: 'num' }, f.usd(tot.spend)), h('th', { class: 'num ok' }, f.usd(tot.saved))))))));
    } catch (e) {
      if (ctx.alive()) table.replaceChildren(errorBox(e));
    }
  };
  for (const el of [by, from, to]) el.addEventListener('change', load);
  await load();
}

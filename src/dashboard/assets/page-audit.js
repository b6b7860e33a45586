// Audit: the hash-chained audit log (GET /admin/audit, oldest first, as the chain is kept) with
// filters by kind, key and time, and paging through next_cursor.

import { api } from './api.js';
import { h, empty, errorBox } from './dom.js';
import * as f from './fmt.js';

const LIMIT = 50;

function summary(r) {
  if (r.kind === 'request' && r.request) {
    const q = r.request;
    return [q.endpoint, q.model_group, q.cache_outcome, String(q.status),
      f.count(q.prompt_tokens) + '/' + f.count(q.completion_tokens) + ' tok', f.usd(q.cost_usd), f.ms(q.latency_ms)]
      .filter(Boolean).join(' · ');
  }
  if (r.admin) return r.admin.action + (r.admin.target ? ' → ' + r.admin.target : '');
  return '';
}

export async function render(ctx) {
  const { root } = ctx;
  const kind = h('select', { testid: 'audit-kind', id: 'audit-kind' },
    [['', 'all'], ['request', 'requests'], ['admin', 'admin actions']].map(([v, t]) => h('option', { value: v }, t)));
  const key = h('input', { type: 'text', testid: 'audit-key', placeholder: 'key id (key_…)', class: 'narrow' });
  const from = h('input', { type: 'datetime-local', testid: 'audit-from' });
  const to = h('input', { type: 'datetime-local', testid: 'audit-to' });
  const apply = h('button', { type: 'submit', class: 'btn primary', testid: 'audit-apply' }, 'Filter');
  const list = h('div', { testid: 'audit-list' });
  const prev = h('button', { type: 'button', class: 'btn', testid: 'audit-prev' }, '← Previous page');
  const next = h('button', { type: 'button', class: 'btn', testid: 'audit-next' }, 'Next page →');
  const form = h('form', { class: 'row filters', testid: 'audit-filters' },
    h('label', { for: 'audit-kind' }, 'Kind'), kind, key, h('label', null, 'From'), from, h('label', null, 'To'), to, apply);
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Audit log')), form, list, h('div', { class: 'row-end' }, prev, next));

  // Cursors of the pages seen, so "newer" can go back.
  let cursors = [null];
  let page = 0;
  let nextCursor = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: String(LIMIT) });
    if (kind.value) q.set('kind', kind.value);
    if (key.value.trim()) q.set('key', key.value.trim());
    if (from.value) q.set('from', new Date(from.value).toISOString());
    if (to.value) q.set('to', new Date(to.value).toISOString());
    if (cursors[page] !== null) q.set('cursor', String(cursors[page]));
    try {
      const d = await api('/admin/audit?' + q.toString());
      if (!ctx.alive()) return;
      const rows = d.data || [];
      nextCursor = d.has_more ? d.next_cursor : null;
      next.disabled = nextCursor === null;
      prev.disabled = page === 0;
      if (!rows.length) {
        list.replaceChildren(empty('audit-empty', 'No audit records match.',
          'Requests and admin actions are recorded as they happen; clear the filters or send a request.'));
        return;
      }
      list.replaceChildren(h('div', { class: 'card' }, h('div', { class: 'table-wrap' }, h('table', null,
        h('thead', null, h('tr', null, ['#', 'Time', 'Kind', 'Key / actor', 'What', ''].map((c) => h('th', null, c)))),
        h('tbody', null, rows.map((r) => h('tr', { testid: 'audit-row', 'data-seq': r.seq, 'data-kind': r.kind },
          h('td', { 'data-label': '#', class: 'num' }, String(r.seq)),
          h('td', { 'data-label': 'Time' }, f.time(r.time_ms)),
          h('td', { 'data-label': 'Kind' }, h('span', { class: 'pill' }, r.kind)),
          h('td', { 'data-label': 'Key' }, h('code', { class: 'small' }, r.request ? (r.request.key_alias || r.request.key_id) : (r.admin ? r.admin.actor : '–'))),
          h('td', { 'data-label': 'What', class: 'small' }, summary(r)),
          h('td', null, h('details', null, h('summary', null, 'details'),
            h('pre', { class: 'json' }, JSON.stringify(r.request || r.admin, null, 2)))))))))));
    } catch (e) {
      if (ctx.alive()) list.replaceChildren(errorBox(e));
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); cursors = [null]; page = 0; load(); });
  next.addEventListener('click', () => { if (nextCursor === null) return; page += 1; cursors[page] = nextCursor; load(); });
  prev.addEventListener('click', () => { if (page === 0) return; page -= 1; load(); });
  await load();
}

// My usage: what a virtual key's own session may see (GET /ui/api/me): spend against its
// budget, its allowed models, and its own numbers over time (the overview page, scoped to it).

import { api } from './api.js';
import { h, stat } from './dom.js';
import * as f from './fmt.js';

export async function render(ctx) {
  const { root } = ctx;
  const m = await api('/ui/api/me');
  if (!ctx.alive()) return;
  const budget = m.budget_usd;
  const ratio = budget ? m.spend_usd / budget : null;
  const fill = h('span', { class: 'bar-fill' + (ratio >= 1 ? ' bad' : ratio >= 0.8 ? ' warn' : '') });
  fill.style.width = Math.round(Math.min(1, ratio || 0) * 100) + '%';
  root.append(
    h('div', { class: 'page-head' }, h('h1', null, 'My usage')),
    h('div', { class: 'card' },
      h('h2', null, m.alias || m.key_id, ' ', h('code', { class: 'small muted' }, m.key_id)),
      h('div', { class: 'stats' },
        stat('me-spend', 'Spend', f.usd(m.spend_usd), m.spend_usd),
        stat('me-budget', 'Budget', budget === null || budget === undefined ? 'none' : f.usd(budget), budget,
          m.budget_period ? 'per ' + m.budget_period : null),
        stat('me-models', 'Models', m.models && m.models.length ? m.models.join(', ') : 'all', m.models ? m.models.length : '')),
      budget ? h('div', { class: 'budget wide', testid: 'me-budget-bar', 'data-ratio': String(ratio) },
        h('span', { class: 'bar-track' }, fill), h('span', null, f.pct(ratio) + ' of the budget used')) : null),
    h('p', null, 'Requests, tokens, cache hits and latency of this key over time are on the ', h('a', { href: '#/overview' }, 'Overview'), ' page.'));
}

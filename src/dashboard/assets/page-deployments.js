// Deployments: per model group, the routing strategy in force and each deployment's requests,
// latency, TTFT, error rate, share of traffic and cooldown (GET /ui/api/deployments; 10 s poll).

import { api } from './api.js';
import { h, empty, errorBox } from './dom.js';
import * as f from './fmt.js';

function shareBar(share) {
  const fill = h('span', { class: 'bar-fill' });
  fill.style.width = Math.round(Math.max(0, Math.min(1, share || 0)) * 100) + '%';
  return h('span', { class: 'bar-track small' }, fill);
}

export async function render(ctx) {
  const { root } = ctx;
  const body = h('div', { testid: 'deployments' });
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Models and deployments'),
    h('span', { class: 'muted small' }, 'last hour · live router state')), body);
  const load = async () => {
    try {
      const d = await api('/ui/api/deployments');
      if (!ctx.alive()) return;
      const groups = d.groups || [];
      if (!groups.length) {
        body.replaceChildren(empty('deployments-empty', 'No model groups configured.',
          'Add deployments under model_list in the config file and restart the gateway.'));
        return;
      }
      body.replaceChildren(...groups.map((g) => h('div', { class: 'card', testid: 'group', 'data-group': g.group },
        h('div', { class: 'card-head' }, h('h2', null, g.group),
          h('span', { class: 'pill', testid: 'strategy' }, 'routing: ' + g.strategy)),
        h('div', { class: 'table-wrap' }, h('table', null,
          h('thead', null, h('tr', null, ['Deployment', 'Provider', 'Model', 'Requests', 'Error rate', 'p50', 'TTFT p50', 'Share', 'State']
            .map((c) => h('th', null, c)))),
          h('tbody', null, g.deployments.map((dp) => h('tr', { testid: 'deployment-row', 'data-id': dp.id },
            h('td', { 'data-label': 'Deployment' }, h('code', null, dp.id)),
            h('td', { 'data-label': 'Provider' }, dp.provider),
            h('td', { 'data-label': 'Model' }, dp.model),
            h('td', { 'data-label': 'Requests', class: 'num', 'data-value': dp.requests }, f.count(dp.requests)),
            h('td', { 'data-label': 'Error rate', class: 'num' + (dp.error_rate > 0.05 ? ' bad' : '') }, f.pct(dp.error_rate),
              dp.errors ? h('span', { class: 'muted small' }, ' (' + f.count(dp.errors) + ')') : null),
            h('td', { 'data-label': 'p50', class: 'num' }, f.ms(dp.p50_ms)),
            h('td', { 'data-label': 'TTFT p50', class: 'num' }, f.ms(dp.ttft_p50_ms)),
            h('td', { 'data-label': 'Share' }, h('span', { class: 'share' }, shareBar(dp.share), ' ', f.pct(dp.share))),
            h('td', { 'data-label': 'State' }, dp.cooling_down
              ? h('span', { class: 'pill bad', testid: 'cooldown' }, 'cooling down ' + f.duration(dp.cooldown_remaining_s))
              : h('span', { class: 'pill ok' }, 'healthy'))))))))));
    } catch (e) {
      if (ctx.alive()) body.replaceChildren(errorBox(e));
    }
  };
  await load();
  ctx.every(10000, load);
}

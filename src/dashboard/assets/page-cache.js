// Cache: stats and the similarity histogram (GET /admin/cache/stats), thresholds per model
// group and namespace edited live (GET/PUT /admin/cache/config), a dry-run preview of a prompt's
// nearest cached neighbours (POST /admin/cache/lookup), and flush with confirmation.

import { api } from './api.js';
import { h, stat, empty, errorBox, confirmDialog, toast } from './dom.js';
import { barChart, drawCharts } from './chart.js';
import * as f from './fmt.js';

function thresholdInput(testid, value, placeholder) {
  return h('input', { type: 'number', min: '0.01', max: '1', step: '0.01', testid, class: 'narrow',
    value: value === undefined || value === null ? '' : String(value), placeholder: placeholder || '' });
}

function verdictText(v) {
  if (!v) return '–';
  if (v.verdict === 'accept') return 'accept';
  const r = v.reason || {};
  const parts = [];
  if (r.new && r.new.length) parts.push('new: ' + r.new.join(', '));
  if (r.cached && r.cached.length) parts.push('cached: ' + r.cached.join(', '));
  return 'reject · ' + String(r.kind || 'other').replace(/_/g, ' ') + (parts.length ? ' (' + parts.join('; ') + ')' : '');
}

export async function render(ctx) {
  const { root } = ctx;
  const statsBox = h('div', { class: 'stats', testid: 'cache-stats' });
  const histBox = h('div', { class: 'charts one' });
  const settingsBox = h('div', { class: 'card', testid: 'cache-settings' });
  const previewBox = h('div', { class: 'card', testid: 'cache-preview' });
  const flushBox = h('div', { class: 'card', testid: 'cache-flush' });
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Cache')), statsBox, histBox,
    h('div', { class: 'grid2' }, settingsBox, previewBox), flushBox);

  let groups = [];
  try {
    const d = await api('/ui/api/deployments');
    groups = (d.groups || []).map((g) => g.group);
  } catch {
    groups = [];
  }

  const loadStats = async () => {
    try {
      const st = await api('/admin/cache/stats');
      if (!ctx.alive()) return;
      statsBox.replaceChildren(
        stat('cache-hit-rate', 'Hit rate', f.pct(st.hit_rate), st.hit_rate,
          `${f.count(st.hits.total)} of ${f.count(st.hits.total + st.misses)} answered from the cache`),
        stat('cache-hits', 'Hits by kind', f.count(st.hits.total), st.hits.total,
          `exact ${f.count(st.hits.exact)} · semantic ${f.count(st.hits.semantic)} · coalesced ${f.count(st.hits.coalesced)}`),
        stat('cache-entries', 'Entries', f.count(st.entries), st.entries, st.index_loading ? 'index loading…' : `index ${f.count(st.index_size)}`),
        stat('cache-bytes', 'Size', f.bytes(st.bytes), st.bytes),
        stat('cache-saved', 'Saved', f.usd(st.usd_saved), st.usd_saved, f.count(st.tokens_saved) + ' tokens'));
      const bars = (st.similarity_histogram || []).map((b) => ({ label: b.from.toFixed(2), value: b.count }));
      const any = bars.some((b) => b.value > 0);
      histBox.replaceChildren(any
        ? barChart({ title: 'Similarity of the best candidate per semantic lookup', bars, yFormat: f.count, testid: 'similarity-histogram' })
        : empty('histogram-empty', 'No semantic lookups yet.', 'Send two similar questions to the same model; the second one\'s similarity lands here.'));
      drawCharts(histBox);
    } catch (e) {
      if (ctx.alive()) statsBox.replaceChildren(errorBox(e));
    }
  };

  // --- thresholds --------------------------------------------------------------------------
  let settings = null;
  const drawSettings = () => {
    const s = settings;
    const def = thresholdInput('threshold-default', s.default_threshold);
    const enabled = h('input', { type: 'checkbox', testid: 'cache-enabled', checked: s.enabled });
    const allGroups = [...new Set([...groups, ...Object.keys(s.group_thresholds || {})])];
    const groupInputs = allGroups.map((g) => [g, thresholdInput('threshold-group-' + g, (s.group_thresholds || {})[g], 'default')]);
    const nsRows = Object.entries(s.namespace_thresholds || {}).map(([ns, t]) => [ns, thresholdInput('threshold-ns-' + ns, t)]);
    const newNs = h('input', { type: 'text', testid: 'threshold-ns-new-name', placeholder: 'namespace', class: 'narrow' });
    const newNsT = thresholdInput('threshold-ns-new-value', null, '0.90');
    const msg = h('p', { class: 'form-error', role: 'alert', testid: 'threshold-error' });
    const form = h('form', { testid: 'threshold-form' },
      h('div', { class: 'card-head' }, h('h2', null, 'Similarity thresholds'),
        h('label', { class: 'inline' }, enabled, ' cache on')),
      h('p', { class: 'muted small' }, 'A cached answer is served when the new question\'s cosine similarity reaches the threshold and the verifier accepts it. Higher = stricter. A namespace threshold wins over its model group\'s; empty = use the default.'),
      h('div', { class: 'form-grid' }, h('label', null, 'Default'), def),
      h('h3', null, 'Per model group'),
      h('div', { class: 'form-grid' }, groupInputs.map(([g, inp]) => [h('label', null, h('code', null, g)), inp])),
      h('h3', null, 'Per namespace'),
      h('div', { class: 'form-grid' }, nsRows.map(([ns, inp]) => [h('label', null, h('code', null, ns)), inp]),
        newNs, newNsT),
      msg,
      h('div', { class: 'row-end' }, h('button', { type: 'submit', class: 'btn primary', testid: 'threshold-save' }, 'Save thresholds')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      msg.textContent = '';
      const num = (inp) => (inp.value.trim() === '' ? null : Number(inp.value));
      const patch = { enabled: enabled.checked, default_threshold: num(def), group_thresholds: {}, namespace_thresholds: {} };
      if (patch.default_threshold === null) { msg.textContent = 'The default threshold cannot be empty.'; return; }
      for (const [g, inp] of groupInputs) { const v = num(inp); if (v !== null) patch.group_thresholds[g] = v; }
      for (const [ns, inp] of nsRows) { const v = num(inp); if (v !== null) patch.namespace_thresholds[ns] = v; }
      if (newNs.value.trim()) {
        const v = num(newNsT);
        if (v === null) { msg.textContent = 'Give the new namespace a threshold.'; return; }
        patch.namespace_thresholds[newNs.value.trim()] = v;
      }
      try {
        settings = await api('/admin/cache/config', { method: 'PUT', body: patch });
        toast('Thresholds saved; the next request uses them.');
        drawSettings();
      } catch (ex) {
        msg.textContent = ex.message;
      }
    });
    settingsBox.replaceChildren(form);
  };
  try {
    settings = await api('/admin/cache/config');
    drawSettings();
  } catch (e) {
    settingsBox.replaceChildren(errorBox(e));
  }

  // --- preview -----------------------------------------------------------------------------
  const model = h('select', { testid: 'preview-model' }, groups.map((g) => h('option', { value: g }, g)));
  const ns = h('input', { type: 'text', testid: 'preview-namespace', placeholder: 'default', class: 'narrow' });
  const prompt = h('textarea', { testid: 'preview-prompt', rows: 3, placeholder: 'Type a question as a user would ask it' });
  const result = h('div', { testid: 'preview-result', 'aria-live': 'polite' });
  const pform = h('form', null,
    h('h2', null, 'Preview a lookup'),
    h('p', { class: 'muted small' }, 'A dry run: shows the nearest cached questions, their similarity and the verifier\'s verdict. Nothing is stored or served.'),
    h('div', { class: 'form-grid' }, h('label', null, 'Model'), model, h('label', null, 'Namespace'), ns),
    prompt,
    h('div', { class: 'row-end' }, h('button', { type: 'submit', class: 'btn primary', testid: 'preview-submit' }, 'Look up')),
    result);
  pform.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!prompt.value.trim()) { result.replaceChildren(h('p', { class: 'form-error' }, 'Type a prompt first.')); return; }
    result.replaceChildren(h('p', { class: 'muted' }, 'Looking up…'));
    try {
      const body = { model: model.value, prompt: prompt.value };
      if (ns.value.trim()) body.namespace = ns.value.trim();
      const r = await api('/admin/cache/lookup', { method: 'POST', body });
      const cands = r.candidates || [];
      const served = cands.find((c) => c.above_threshold && c.verdict && c.verdict.verdict === 'accept');
      result.replaceChildren(
        h('p', { testid: 'preview-outcome', 'data-outcome': served ? 'hit' : 'miss' },
          served ? h('strong', { class: 'ok' }, 'Would be served from the cache') : h('strong', null, 'Would go upstream (miss)'),
          h('span', { class: 'muted small' }, ` · group ${r.model_group} · namespace ${r.namespace} · threshold ${r.threshold.toFixed(2)}`,
            r.semantic ? '' : ' · not eligible for semantic lookup')),
        cands.length
          ? h('div', { class: 'table-wrap' }, h('table', null,
            h('thead', null, h('tr', null, h('th', null, 'Cached question'), h('th', null, 'Similarity'), h('th', null, 'Verdict'))),
            h('tbody', null, cands.map((c) => h('tr', { testid: 'preview-candidate', 'data-similarity': c.similarity },
              h('td', { 'data-label': 'Cached question' }, c.cached_query || h('span', { class: 'muted' }, '(not kept)')),
              h('td', { 'data-label': 'Similarity', class: 'num' + (c.above_threshold ? ' ok' : '') }, c.similarity.toFixed(3)),
              h('td', { 'data-label': 'Verdict', class: c.verdict && c.verdict.verdict === 'accept' ? 'ok' : 'bad' }, verdictText(c.verdict)))))))
          : empty('preview-empty', 'No cached neighbours in this scope.', 'Send this question once through the API, then preview a rewording of it.'));
    } catch (ex) {
      result.replaceChildren(errorBox(ex));
    }
  });
  previewBox.replaceChildren(pform);

  // --- flush -------------------------------------------------------------------------------
  const fns = h('input', { type: 'text', testid: 'flush-namespace', placeholder: 'all namespaces', class: 'narrow' });
  const fmodel = h('select', { testid: 'flush-model' }, h('option', { value: '' }, 'all models'), groups.map((g) => h('option', { value: g }, g)));
  flushBox.replaceChildren(h('h2', null, 'Flush'),
    h('p', { class: 'muted small' }, 'Deletes cached answers. Leave both empty to flush everything.'),
    h('div', { class: 'row' }, fns, fmodel,
      h('button', { type: 'button', class: 'btn danger', testid: 'flush-button', onclick: async () => {
        const body = {};
        if (fns.value.trim()) body.namespace = fns.value.trim();
        if (fmodel.value) body.model = fmodel.value;
        const what = [body.namespace ? 'namespace ' + body.namespace : null, body.model ? 'model ' + body.model : null].filter(Boolean).join(', ') || 'the whole cache';
        if (!(await confirmDialog(`Delete every cached answer in ${what}? This cannot be undone.`, 'Flush'))) return;
        try {
          const r = await api('/admin/cache/flush', { method: 'POST', body });
          toast(`Flushed ${f.count(r.deleted)} entries.`);
          loadStats();
        } catch (ex) {
          toast(ex.message, 'bad');
        }
      } }, 'Flush…')));

  await loadStats();
  ctx.every(5000, loadStats);
}

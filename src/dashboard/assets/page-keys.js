// Keys: create (the secret is shown once), limits, allowed models, spend against budget as a
// bar, rotate and revoke (the /admin/keys API of src/api/keys.rs; spend from /ui/api/spend).

import { api } from './api.js';
import { h, empty, errorBox, confirmDialog, toast } from './dom.js';
import * as f from './fmt.js';

function budgetBar(spent, budget) {
  if (!budget) return h('span', { class: 'muted small' }, f.usd(spent) + ' · no budget');
  const r = budget > 0 ? spent / budget : 1;
  const fill = h('span', { class: 'bar-fill' + (r >= 1 ? ' bad' : r >= 0.8 ? ' warn' : '') });
  fill.style.width = Math.round(Math.min(1, r) * 100) + '%';
  return h('span', { class: 'budget', testid: 'budget-bar', 'data-ratio': String(r) },
    h('span', { class: 'bar-track' }, fill),
    h('span', { class: 'small' }, `${f.usd(spent)} of ${f.usd(budget)}`));
}

function secretPanel(title, secret, extra) {
  const input = h('input', { type: 'text', readonly: true, value: secret, testid: 'key-secret', class: 'mono', 'aria-label': 'Secret' });
  const panel = h('div', { class: 'card secret', testid: 'secret-panel', role: 'alert' },
    h('h2', null, title),
    h('p', null, h('strong', null, 'Copy it now: it is shown only once.'), ' The gateway keeps only a hash of it.', extra ? ' ' + extra : ''),
    h('div', { class: 'row' }, input,
      h('button', { type: 'button', class: 'btn', testid: 'key-secret-copy', onclick: async () => {
        input.select();
        try { await navigator.clipboard.writeText(secret); toast('Copied.'); } catch { toast('Select the text and copy it by hand.', 'bad'); }
      } }, 'Copy'),
      h('button', { type: 'button', class: 'btn', testid: 'key-secret-done', onclick: () => panel.remove() }, 'Done')));
  return panel;
}

export async function render(ctx) {
  const { root } = ctx;
  const secretSlot = h('div');
  const listBox = h('div', { testid: 'key-list' });
  let groups = [];
  try {
    groups = ((await api('/ui/api/deployments')).groups || []).map((g) => g.group);
  } catch {
    groups = [];
  }

  const form = keyForm(groups, null, async (body) => {
    const k = await api('/admin/keys', { method: 'POST', body });
    secretSlot.replaceChildren(secretPanel(`Key ${k.alias || k.id} created`, k.key));
    await load();
  });

  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Keys')), secretSlot, form, listBox);

  const load = async () => {
    try {
      const [list, spend] = await Promise.all([
        api('/admin/keys'),
        api('/ui/api/spend?group_by=key').catch(() => ({ rows: [] })),
      ]);
      if (!ctx.alive()) return;
      const spent = new Map((spend.rows || []).map((r) => [r.key, r.spend_usd || 0]));
      const keys = (list.data || []).slice().reverse();
      if (!keys.length) {
        listBox.replaceChildren(empty('keys-empty', 'No virtual keys yet.',
          'Create one above and hand its secret to an app or a teammate; their spend and limits show here.'));
        return;
      }
      listBox.replaceChildren(h('div', { class: 'card' }, h('h2', null, 'Keys'), h('div', { class: 'table-wrap' }, h('table', null,
        h('thead', null, h('tr', null, ['Key', 'Status', 'Models', 'Limits', 'Spend (all time) vs budget', 'Created', ''].map((c) => h('th', null, c)))),
        h('tbody', null, keys.map((k) => h('tr', { testid: 'key-row', 'data-id': k.id, 'data-alias': k.alias || '', 'data-status': k.status },
          h('td', { 'data-label': 'Key' }, h('strong', null, k.alias || '(no alias)'), h('br'), h('code', { class: 'small' }, k.id),
            k.admin ? h('span', { class: 'pill' }, 'admin') : null),
          h('td', { 'data-label': 'Status' }, h('span', { class: 'pill ' + (k.status === 'active' ? 'ok' : 'bad'), testid: 'key-status' }, k.status)),
          h('td', { 'data-label': 'Models' }, k.models && k.models.length ? k.models.join(', ') : h('span', { class: 'muted' }, 'all')),
          h('td', { 'data-label': 'Limits', class: 'small' }, [
            k.rpm ? f.count(k.rpm) + ' req/min' : null,
            k.tpm ? f.count(k.tpm) + ' tok/min' : null,
            k.max_parallel_requests ? k.max_parallel_requests + ' parallel' : null,
            k.expires ? 'expires ' + k.expires.slice(0, 10) : null,
          ].filter(Boolean).join(' · ') || h('span', { class: 'muted' }, 'none')),
          h('td', { 'data-label': 'Spend' }, budgetBar(spent.get(k.id) || 0, k.max_budget),
            k.budget_duration ? h('span', { class: 'muted small' }, ' per ' + k.budget_duration) : null),
          h('td', { 'data-label': 'Created', class: 'small' }, (k.created || '').slice(0, 10)),
          h('td', { class: 'actions' }, k.status === 'revoked' ? null : [
            h('button', { type: 'button', class: 'btn small', testid: 'key-edit', onclick: () => editKey(k) }, 'Edit'),
            h('button', { type: 'button', class: 'btn small', testid: 'key-rotate', onclick: async () => {
              if (!(await confirmDialog(`Rotate ${k.alias || k.id}? A new secret is issued; the old one keeps working for 24 hours.`, 'Rotate'))) return;
              try {
                const r = await api(`/admin/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST', body: {} });
                secretSlot.replaceChildren(secretPanel(`Key ${k.alias || k.id} rotated`, r.key,
                  r.previous_key_valid_until ? `The previous secret works until ${r.previous_key_valid_until}.` : ''));
                await load();
              } catch (ex) { toast(ex.message, 'bad'); }
            } }, 'Rotate'),
            h('button', { type: 'button', class: 'btn small danger', testid: 'key-revoke', onclick: async () => {
              if (!(await confirmDialog(`Revoke ${k.alias || k.id}? Requests with it fail at once. This cannot be undone.`, 'Revoke'))) return;
              try {
                await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
                toast('Key revoked.');
                await load();
              } catch (ex) { toast(ex.message, 'bad'); }
            } }, 'Revoke'),
          ]))))))));
    } catch (e) {
      if (ctx.alive()) listBox.replaceChildren(errorBox(e));
    }
  };
  const editKey = (k) => {
    const dlg = h('dialog', { class: 'dialog wide', testid: 'key-edit-dialog' });
    const close = () => { dlg.close(); dlg.remove(); };
    const f = keyForm(groups, k, async (body) => {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'PATCH', body });
      close();
      toast('Key updated.');
      await load();
    }, close);
    dlg.append(f);
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
    document.body.append(dlg);
    dlg.showModal();
  };

  await load();
}

/** The create form (`k` null) or the edit form of key `k`; `submit(body)` sends it. In edit
 * mode every limit is sent, an emptied one as null (PATCH clears it); Expires left empty keeps
 * the current expiry. */
function keyForm(groups, k, submit, cancel) {
  const edit = Boolean(k);
  const pre = edit ? 'edit-' : 'key-';
  const val = (v) => (v === null || v === undefined ? '' : String(v));
  const alias = h('input', { type: 'text', testid: pre + 'alias', placeholder: 'team-a', id: pre + 'k-alias', value: edit ? val(k.alias) : '' });
  const modelBoxes = groups.map((g) => [g, h('input', { type: 'checkbox', testid: pre + 'model-' + g, value: g, checked: edit && (k.models || []).includes(g) })]);
  const budget = h('input', { type: 'number', min: '0', step: '0.01', testid: pre + 'budget', placeholder: 'none', id: pre + 'k-budget', value: edit ? val(k.max_budget) : '' });
  const periods = [['', 'never resets'], ['1d', 'per day'], ['7d', 'per week'], ['30d', 'per 30 days']];
  if (edit && k.budget_duration && !periods.some(([v]) => v === k.budget_duration)) periods.push([k.budget_duration, 'per ' + k.budget_duration]);
  const period = h('select', { testid: pre + 'budget-duration', id: pre + 'k-period' },
    periods.map(([v, t]) => h('option', { value: v, selected: edit && val(k.budget_duration) === v }, t)));
  const rpm = h('input', { type: 'number', min: '1', step: '1', testid: pre + 'rpm', placeholder: 'unlimited', id: pre + 'k-rpm', value: edit ? val(k.rpm) : '' });
  const tpm = h('input', { type: 'number', min: '1', step: '1', testid: pre + 'tpm', placeholder: 'unlimited', id: pre + 'k-tpm', value: edit ? val(k.tpm) : '' });
  const expires = h('input', { type: 'text', testid: pre + 'expires', id: pre + 'k-exp',
    placeholder: edit ? (k.expires ? 'keep (' + k.expires.slice(0, 10) + ')' : 'never (e.g. 30d)') : 'never (e.g. 30d)' });
  const admin = h('input', { type: 'checkbox', testid: pre + 'admin', checked: edit && k.admin });
  const err = h('p', { class: 'form-error', role: 'alert', testid: pre + 'error' });
  const form = h('form', { class: edit ? '' : 'card', testid: edit ? 'key-edit-form' : 'key-create-form' },
    h('h2', null, edit ? 'Edit ' + (k.alias || k.id) : 'Create a key'),
    h('div', { class: 'form-grid' },
      h('label', { for: pre + 'k-alias' }, 'Alias'), alias,
      h('label', null, 'Models'), h('div', { class: 'checks' }, modelBoxes.length
        ? modelBoxes.map(([g, cb]) => h('label', { class: 'inline' }, cb, ' ', g))
        : h('span', { class: 'muted small' }, 'all'), h('span', { class: 'muted small' }, ' (none ticked = all)')),
      h('label', { for: pre + 'k-budget' }, 'Budget (USD)'), h('div', { class: 'row' }, budget, period),
      h('label', { for: pre + 'k-rpm' }, 'Requests/min'), rpm,
      h('label', { for: pre + 'k-tpm' }, 'Tokens/min'), tpm,
      h('label', { for: pre + 'k-exp' }, 'Expires'), expires,
      h('label', null, 'Admin'), h('label', { class: 'inline' }, admin, ' may use the admin API and this dashboard')),
    err,
    h('div', { class: 'row-end' },
      cancel ? h('button', { type: 'button', class: 'btn', testid: pre + 'cancel', onclick: cancel }, 'Cancel') : null,
      h('button', { type: 'submit', class: 'btn primary', testid: edit ? 'edit-submit' : 'key-create-submit' }, edit ? 'Save' : 'Create key')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const num = (inp) => (inp.value === '' ? null : Number(inp.value));
    const models = modelBoxes.filter(([, cb]) => cb.checked).map(([g]) => g);
    const body = edit
      ? {
        alias: alias.value.trim() || null, models: models.length ? models : null, max_budget: num(budget),
        budget_duration: period.value || null, rpm: num(rpm), tpm: num(tpm), admin: admin.checked,
      }
      : {};
    if (!edit) {
      if (alias.value.trim()) body.alias = alias.value.trim();
      if (models.length) body.models = models;
      if (budget.value !== '') body.max_budget = Number(budget.value);
      if (period.value) body.budget_duration = period.value;
      if (rpm.value !== '') body.rpm = Number(rpm.value);
      if (tpm.value !== '') body.tpm = Number(tpm.value);
      if (admin.checked) body.admin = true;
    }
    if (expires.value.trim()) body.expires = expires.value.trim();
    try {
      await submit(body);
      if (!edit) form.reset();
    } catch (ex) {
      err.textContent = ex.message;
    }
  });
  return form;
}

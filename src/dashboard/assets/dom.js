// Tiny DOM builders (no framework): h('div', {class, testid, onclick}, ...children).
// Never sets inline style attributes (the CSP forbids them); widths go through element.style.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An HTML element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replace a node's children. */
export function mount(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/** A headline number card; `value` is the raw number kept in data-value for tests and tools. */
export function stat(testid, label, shown, raw, sub) {
  return h('div', { class: 'stat', testid, 'data-value': raw === null || raw === undefined ? '' : raw },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: String(shown).length > 8 ? 'stat-value long' : 'stat-value' }, shown),
    sub ? h('div', { class: 'stat-sub' }, sub) : null);
}

/** A "nothing here yet" box that says what to do next. */
export function empty(testid, title, ...next) {
  return h('div', { class: 'empty', testid }, h('strong', null, title), h('p', null, ...next));
}

/** An error banner. */
export function errorBox(err) {
  return h('div', { class: 'error-box', role: 'alert', testid: 'error' },
    err && err.status === 403 ? 'Not allowed: ' : '', err ? err.message : 'Something went wrong');
}

/** Inline code. */
export function code(text) {
  return h('code', null, text);
}

/** A confirmation dialog (a real <dialog>, not window.confirm); resolves true on confirm. */
export function confirmDialog(message, confirmLabel = 'Confirm') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'dialog', testid: 'confirm-dialog' });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    dlg.append(
      h('p', null, message),
      h('div', { class: 'row-end' },
        h('button', { type: 'button', class: 'btn', testid: 'confirm-cancel', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: 'btn danger', testid: 'confirm-ok', onclick: () => done(true) }, confirmLabel)));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** A small transient message at the bottom of the screen. */
export function toast(text, kind = 'ok') {
  const t = h('div', { class: 'toast ' + kind, role: 'status', testid: 'toast' }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

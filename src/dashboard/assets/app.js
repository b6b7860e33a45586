// The dashboard's shell: session check and login form, navigation by hash route, logout, and
// the lifecycle of the page on screen (each page stops its timers and streams when left).

import { session, login, logout, currentSession, isAdmin, setUnauthorizedHandler } from './api.js';
import { h, mount, errorBox } from './dom.js';
import * as overview from './page-overview.js';
import * as deployments from './page-deployments.js';
import * as cache from './page-cache.js';
import * as keys from './page-keys.js';
import * as spend from './page-spend.js';
import * as live from './page-live.js';
import * as audit from './page-audit.js';
import * as me from './page-me.js';

const PAGES = {
  overview: { title: 'Overview', mod: overview, admin: false },
  me: { title: 'My usage', mod: me, admin: false, keyOnly: true },
  deployments: { title: 'Deployments', mod: deployments, admin: true },
  cache: { title: 'Cache', mod: cache, admin: true },
  keys: { title: 'Keys', mod: keys, admin: true },
  spend: { title: 'Spend', mod: spend, admin: true },
  live: { title: 'Live', mod: live, admin: true },
  audit: { title: 'Audit', mod: audit, admin: true },
};

const app = document.getElementById('app');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const whoName = document.getElementById('who-name');
const menuToggle = document.getElementById('menu-toggle');

let cleanups = [];
let renderSeq = 0;

function stopPage() {
  for (const fn of cleanups) {
    try { fn(); } catch { /* a page's cleanup failing must not block the next page */ }
  }
  cleanups = [];
}

function route() {
  const m = location.hash.match(/^#\/([a-z]+)/);
  return m ? m[1] : '';
}

function visiblePages() {
  return Object.entries(PAGES).filter(([, p]) => (isAdmin() ? !p.keyOnly : !p.admin));
}

function renderNav(current) {
  nav.replaceChildren(...visiblePages().map(([id, p]) =>
    h('a', { href: '#/' + id, testid: 'nav-' + id, class: id === current ? 'active' : null, 'aria-current': id === current ? 'page' : null }, p.title)));
  nav.hidden = false;
  who.hidden = false;
  menuToggle.hidden = false;
  whoName.textContent = isAdmin()
    ? (session.alias || (session.keyId === 'master' ? 'master key' : session.keyId || 'admin')) + ' · admin'
    : (session.alias || session.keyId || 'key');
  document.body.classList.remove('nav-open');
  menuToggle.setAttribute('aria-expanded', 'false');
}

function hideNav() {
  nav.hidden = true;
  who.hidden = true;
  menuToggle.hidden = true;
  nav.replaceChildren();
}

function showLogin(message) {
  stopPage();
  hideNav();
  document.title = 'Log in · Sluice';
  const input = h('input', { type: 'password', id: 'login-key', name: 'key', autocomplete: 'current-password', required: true, testid: 'login-key', placeholder: 'sk-…' });
  const err = h('p', { class: 'form-error', testid: 'login-error', role: 'alert' }, message || '');
  const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'login-submit' }, 'Log in');
  const form = h('form', { class: 'card login', testid: 'login-form' },
    h('h1', null, 'Sluice dashboard'),
    h('p', { class: 'muted' }, 'Log in with the master key, an admin key, or your own virtual key to see its usage.'),
    h('label', { for: 'login-key' }, 'Key'),
    input, err, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    err.textContent = '';
    try {
      await login(input.value.trim());
      input.value = '';
      const target = route();
      if (!target || !allowed(target)) location.hash = '#/' + home();
      else render();
    } catch (ex) {
      err.textContent = ex.status === 401 ? 'That key was not accepted. Check it and try again.' : ex.message;
    } finally {
      submit.disabled = false;
    }
  });
  mount(app, form);
  input.focus();
}

function home() {
  return isAdmin() ? 'overview' : 'me';
}

function allowed(id) {
  const p = PAGES[id];
  return Boolean(p) && (isAdmin() ? !p.keyOnly : !p.admin);
}

async function render() {
  const seq = ++renderSeq;
  stopPage();
  if (!session.role) {
    let s;
    try {
      s = await currentSession();
    } catch (e) {
      mount(app, errorBox(e));
      return;
    }
    if (seq !== renderSeq) return;
    if (!s) { showLogin(); return; }
  }
  const id = route();
  if (!id) { location.replace('#/' + home()); return; }
  renderNav(id);
  const page = PAGES[id];
  if (!page) {
    mount(app, h('section', { class: 'page', testid: 'page-missing' }, h('h1', null, 'No such page'),
      h('p', null, h('a', { href: '#/' + home() }, 'Go to the start page'))));
    return;
  }
  if (!allowed(id)) {
    document.title = 'Not allowed · Sluice';
    mount(app, h('section', { class: 'page', testid: 'page-forbidden' }, h('h1', null, 'Admins only'),
      h('p', null, 'This page needs the master key or an admin key. Your key can see ',
        h('a', { href: '#/me' }, 'its own usage'), '.')));
    return;
  }
  document.title = page.title + ' · Sluice';
  const root = h('section', { class: 'page', testid: 'page-' + id });
  mount(app, root);
  const ctx = {
    root,
    onCleanup: (fn) => cleanups.push(fn),
    every: (ms, fn) => { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
    alive: () => seq === renderSeq,
  };
  try {
    await page.mod.render(ctx);
  } catch (e) {
    if (seq === renderSeq && session.role) root.append(errorBox(e));
  }
}

setUnauthorizedHandler(() => {
  if (!session.role) return;
  session.role = null;
  showLogin('Your session ended. Log in again.');
});

document.getElementById('logout').addEventListener('click', async () => {
  stopPage();
  try { await logout(); } catch { /* logged out locally either way */ }
  showLogin('You are logged out.');
});

menuToggle.addEventListener('click', () => {
  const open = document.body.classList.toggle('nav-open');
  menuToggle.setAttribute('aria-expanded', String(open));
});

window.addEventListener('hashchange', render);
render();

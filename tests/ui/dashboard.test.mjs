// The dashboard in a real browser (headless Debian chromium via playwright-core) against the
// real `sluice` binary with a mock upstream. Tests run in order and share one gateway; each one
// waits on conditions (never on timings). Screenshots of every page go to docs/screenshots/.
//
// Run: node --test tests/ui/   (after `cargo build --bins` and scripts/setup.sh)

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  startGateway, launchBrowser, chat, python, screenshot, waitFor, MASTER_KEY, MODEL,
} from './harness.mjs';

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const LONG = 30_000;

let gw;
let browser;
let admin; // the admin's page
let adminContext;
let createdKey; // { id, secret }
const pageErrors = [];

function tid(id) {
  return `[data-testid="${id}"]`;
}

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(LONG);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) pageErrors.push(m.text()); });
  return { context, page };
}

async function login(page, key) {
  await page.goto(gw.baseUrl + '/ui');
  await page.locator(tid('login-key')).fill(key);
  await page.locator(tid('login-submit')).click();
  await page.locator(tid('nav-overview')).waitFor({ state: 'attached' });
}

async function go(page, route) {
  await page.evaluate((r) => { location.hash = r; }, '#/' + route);
  await page.locator(tid('page-' + route)).waitFor();
}

/** The data-value of a stat card as a number (0 when empty). */
async function statValue(page, id) {
  const v = await page.locator(tid(id)).getAttribute('data-value');
  return v === null || v === '' ? 0 : Number(v);
}

/** fetch() from inside the page (its cookie, optionally the CSRF token); returns {status, body}. */
async function pageFetch(page, path, { method = 'GET', body, csrf = false } = {}) {
  return page.evaluate(async ({ path, method, body, csrf }) => {
    const headers = { 'content-type': 'application/json' };
    if (csrf) {
      const s = await (await fetch('/ui/api/session')).json();
      headers['x-sluice-csrf'] = s.csrf_token;
    }
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: await r.text() };
  }, { path, method, body, csrf });
}

let failed = false;

/** A test step; a failure is remembered so the server log can be shown at the end. */
function step(name, fn) {
  it(name, async () => {
    try {
      await fn();
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

describe('dashboard', () => {
  before(async () => {
    gw = await startGateway();
    browser = await launchBrowser();
    ({ context: adminContext, page: admin } = await newPage());
  });

  after(async () => {
    if (browser) await browser.close();
    if (gw) {
      if (failed) console.error(`--- sluice stderr (last lines) ---\n${gw.serverLog()}`);
      await gw.stop();
    }
  });

  step('serves the UI with a strict CSP and sends browsers from / to /ui', async () => {
    const r = await fetch(gw.baseUrl + '/ui');
    assert.equal(r.status, 200);
    const csp = r.headers.get('content-security-policy') || '';
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'/);
    const root = await fetch(gw.baseUrl + '/', { headers: { accept: 'text/html' }, redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.match(root.headers.get('location') || '', /\/ui/);
    const asset = await fetch(gw.baseUrl + '/ui/app.js');
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type') || '', /javascript/);
  });

  step('shows the login form, refuses a wrong key and logs in with the master key', async () => {
    await admin.goto(gw.baseUrl + '/');
    await admin.locator(tid('login-form')).waitFor();
    assert.match(admin.url(), /\/ui/);
    await screenshot(admin, 'login');
    await admin.locator(tid('login-key')).fill('sk-not-a-real-key');
    await admin.locator(tid('login-submit')).click();
    await waitFor(async () => (await admin.locator(tid('login-error')).textContent()).includes('not accepted'),
      { what: 'the login error' });
    await admin.locator(tid('login-key')).fill(MASTER_KEY);
    await admin.locator(tid('login-submit')).click();
    await admin.locator(tid('page-overview')).waitFor();
    const cookies = await adminContext.cookies();
    const session = cookies.find((c) => c.name === 'sluice_session');
    assert.ok(session, 'a sluice_session cookie is set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    // The cookie is not readable from scripts.
    assert.equal(await admin.evaluate(() => document.cookie.includes('sluice_session')), false);
  });

  step('overview numbers change as requests go through the API', async () => {
    await go(admin, 'overview');
    await admin.locator(tid('stat-requests')).waitFor();
    const before = await statValue(admin, 'stat-requests');
    const tokensBefore = await statValue(admin, 'stat-tokens-in');
    const ns = 'ui-overview-' + randomBytes(4).toString('hex');
    for (let i = 0; i < 3; i += 1) {
      const r = await chat(gw.baseUrl, MASTER_KEY, `Overview question number ${i} about rivers`, { namespace: ns });
      assert.equal(r.status, 200, r.body);
    }
    // The same question again: an exact cache hit.
    const hit = await chat(gw.baseUrl, MASTER_KEY, 'Overview question number 0 about rivers', { namespace: ns });
    assert.equal(hit.cache, 'hit-exact');
    // A streamed answer gives a time to first token.
    const streamed = await chat(gw.baseUrl, MASTER_KEY, 'A streamed overview question about lakes', { namespace: ns, stream: true });
    assert.equal(streamed.status, 200);
    assert.match(streamed.body, /data: \[DONE\]/);
    // No reload: the page polls and the numbers move by themselves.
    await waitFor(async () => (await statValue(admin, 'stat-requests')) >= before + 5,
      { timeout: 60_000, what: 'the overview request count to grow by 5' });
    await waitFor(async () => (await statValue(admin, 'stat-ttft')) > 0, { timeout: 60_000, what: 'a time to first token' });
    assert.ok((await statValue(admin, 'stat-tokens-in')) > tokensBefore);
    await waitFor(async () => (await statValue(admin, 'stat-hit-rate')) > 0, { timeout: 60_000, what: 'a hit rate above 0' });
    // Charts appear once there is traffic in the range.
    await admin.locator(tid('chart-requests')).waitFor({ timeout: 60_000 });
    for (const r of ['24h', '7d', '1h']) {
      await admin.locator(tid('range-' + r)).click();
      await waitFor(async () => (await admin.locator(tid('range-' + r)).getAttribute('aria-pressed')) === 'true');
      await admin.locator(tid('chart-requests')).waitFor();
    }
  });

  step('creates a key in the UI that works from the openai SDK', async () => {
    await go(admin, 'keys');
    const alias = 'ui-sdk-' + randomBytes(3).toString('hex');
    await admin.locator(tid('key-alias')).fill(alias);
    await admin.locator(tid('key-model-' + MODEL)).check();
    await admin.locator(tid('key-budget')).fill('5');
    await admin.locator(tid('key-budget-duration')).selectOption('30d');
    await admin.locator(tid('key-rpm')).fill('600');
    await admin.locator(tid('key-create-submit')).click();
    const secret = await admin.locator(tid('key-secret')).inputValue();
    assert.match(secret, /^sk-/);
    const row = admin.locator(`${tid('key-row')}[data-alias="${alias}"]`);
    await row.waitFor();
    const id = await row.getAttribute('data-id');
    createdKey = { id, secret, alias };

    const script = `
import os, openai
c = openai.OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["KEY"], max_retries=0, timeout=60)
raw = c.chat.completions.with_raw_response.create(model=os.environ["MODEL"], messages=[{"role": "user", "content": "Hello from the SDK " + os.environ["ALIAS"]}])
r = raw.parse()
print(raw.headers.get("x-sluice-cache"), r.choices[0].message.content, r.usage.prompt_tokens)
try:
    c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "not allowed"}])
    print("UNEXPECTED: model outside the key's list was served")
except openai.APIStatusError as e:
    print("refused", e.status_code)
`;
    const out = await python(script, { BASE: gw.baseUrl, KEY: secret, MODEL, ALIAS: alias });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^miss Hello from the benchmark upstream\. \d+/m);
    assert.match(out.stdout, /^refused 40[13]$/m);
    assert.doesNotMatch(out.stdout, /UNEXPECTED/);

    // The key's spend shows against its budget once the request is priced.
    await admin.locator(tid('key-secret-done')).click();
    await waitFor(async () => {
      await go(admin, 'overview');
      await go(admin, 'keys');
      const bar = row.locator(tid('budget-bar'));
      return Number(await bar.getAttribute('data-ratio')) > 0;
    }, { timeout: 60_000, interval: 1000, what: 'the key\'s spend bar to move' });
    await screenshot(admin, 'keys');
  });

  step('a threshold changed in the UI changes the next request\'s cache outcome', async () => {
    const ns = 'ui-thr-' + randomBytes(4).toString('hex');
    const first = await chat(gw.baseUrl, MASTER_KEY, 'What is the capital of France?', { namespace: ns });
    assert.equal(first.cache, 'miss');
    // The same question worded slightly differently: not an exact match, a close neighbour.
    const reworded = 'What is the capital of France';

    await go(admin, 'cache');
    const setNs = async (value) => {
      const existing = admin.locator(tid('threshold-ns-' + ns));
      if (await existing.count()) await existing.fill(value);
      else {
        await admin.locator(tid('threshold-ns-new-name')).fill(ns);
        await admin.locator(tid('threshold-ns-new-value')).fill(value);
      }
      await admin.locator(tid('threshold-save')).click();
      await waitFor(async () => (await admin.locator(tid('threshold-ns-' + ns)).inputValue()) === value,
        { what: `namespace threshold ${value} saved` });
    };
    const preview = async () => {
      await admin.locator(tid('preview-model')).selectOption(MODEL);
      await admin.locator(tid('preview-namespace')).fill(ns);
      await admin.locator(tid('preview-prompt')).fill(reworded);
      await admin.locator(tid('preview-result')).evaluate((el) => el.replaceChildren());
      await admin.locator(tid('preview-submit')).click();
      const outcome = admin.locator(tid('preview-outcome'));
      await outcome.waitFor();
      assert.equal(await admin.locator(tid('preview-candidate')).count(), 1);
      return outcome.getAttribute('data-outcome');
    };

    // Lenient: the preview predicts a hit and the request is served from the cache. A hit is
    // not stored, so the cache still holds only the first question.
    await setNs('0.5');
    assert.equal(await preview(), 'hit');
    const lenient = await chat(gw.baseUrl, MASTER_KEY, reworded, { namespace: ns });
    assert.equal(lenient.cache, 'hit-semantic');

    // Strictest: the very same request now goes upstream.
    await setNs('1');
    assert.equal(await preview(), 'miss');
    const strict = await chat(gw.baseUrl, MASTER_KEY, reworded, { namespace: ns });
    assert.equal(strict.cache, 'miss');
    // The stats (polled) count the semantic hit; the histogram has the lookups.
    await waitFor(async () => (await statValue(admin, 'cache-hits')) >= 2, { timeout: 60_000, what: 'cache stats to count the hits' });
    await admin.locator(tid('similarity-histogram')).waitFor({ timeout: 60_000 });
    await screenshot(admin, 'cache');

    // Flush with confirmation empties the namespace.
    await admin.locator(tid('flush-namespace')).fill(ns);
    await admin.locator(tid('flush-button')).click();
    await admin.locator(tid('confirm-ok')).click();
    await waitFor(async () => /Flushed 2 entries/.test(await admin.locator(tid('toast')).last().textContent()), { what: 'flush toast' });
    const after = await chat(gw.baseUrl, MASTER_KEY, 'What is the capital of France?', { namespace: ns });
    assert.equal(after.cache, 'miss');
  });

  step('the live tail shows a request as it happens', async () => {
    await go(admin, 'live');
    await waitFor(async () => (await admin.locator(tid('tail-status')).textContent()) === 'live', { what: 'the tail to connect' });
    const r = await chat(gw.baseUrl, MASTER_KEY, 'A request for the live tail ' + randomBytes(4).toString('hex'));
    assert.equal(r.status, 200);
    assert.ok(r.requestId, 'x-request-id');
    const row = admin.locator(`${tid('tail-row')}[data-request-id="${r.requestId}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute('data-model'), MODEL);
    assert.equal(await row.getAttribute('data-cache'), 'miss');
    // Never prompt text.
    assert.doesNotMatch(await admin.locator(tid('tail-body')).textContent(), /A request for the live tail/);
    await screenshot(admin, 'live');
  });

  step('deployments, spend and audit pages show the traffic', async () => {
    // The overview's screenshot is taken here, with every earlier test's traffic in it.
    await go(admin, 'overview');
    await admin.locator(tid('chart-requests')).waitFor();
    const all = JSON.parse((await pageFetch(admin, '/ui/api/overview?range=1h')).body).totals.requests;
    await waitFor(async () => (await statValue(admin, 'stat-requests')) >= all, { what: 'the overview to catch up' });
    await screenshot(admin, 'overview');

    await go(admin, 'deployments');
    const rows = admin.locator(tid('deployment-row'));
    await rows.first().waitFor();
    assert.equal(await admin.locator(`${tid('group')}[data-group="${MODEL}"] ${tid('deployment-row')}`).count(), 2);
    assert.match(await admin.locator(`${tid('group')}[data-group="${MODEL}"] ${tid('strategy')}`).textContent(), /simple-shuffle/);
    await screenshot(admin, 'deployments');

    await go(admin, 'spend');
    await admin.locator(`${tid('spend-row')}[data-group="${MODEL}"]`).waitFor();
    await admin.locator(tid('spend-group-by')).selectOption('key');
    await admin.locator(`${tid('spend-row')}[data-group="${createdKey.id}"]`).waitFor();
    const href = await admin.locator(tid('spend-csv')).getAttribute('href');
    assert.match(href, /^\/ui\/api\/spend\.csv\?group_by=key/);
    const csv = await pageFetch(admin, href);
    assert.equal(csv.status, 200);
    assert.match(csv.body.split('\n')[0], /saved_usd/);
    await admin.locator(tid('spend-group-by')).selectOption('model');
    await admin.locator(`${tid('spend-row')}[data-group="${MODEL}"]`).waitFor();
    await screenshot(admin, 'spend');

    await go(admin, 'audit');
    await admin.locator(tid('audit-row')).first().waitFor();
    await admin.locator(tid('audit-kind')).selectOption('admin');
    await admin.locator(tid('audit-apply')).click();
    await waitFor(async () => {
      const kinds = await admin.locator(tid('audit-row')).evaluateAll((els) => els.map((e) => e.dataset.kind));
      return kinds.length > 0 && kinds.every((k) => k === 'admin');
    }, { what: 'only admin records' });
    await admin.locator(tid('audit-kind')).selectOption('');
    await admin.locator(tid('audit-apply')).click();
    await waitFor(async () => (await admin.locator(`${tid('audit-row')}[data-kind="request"]`).count()) > 0, { what: 'request records again' });
    await screenshot(admin, 'audit');
  });

  step('changes need the CSRF token', async () => {
    const without = await pageFetch(admin, '/admin/cache/flush', { method: 'POST', body: { namespace: 'nothing-here' } });
    assert.equal(without.status, 403);
    assert.match(without.body, /csrf/i);
    const withToken = await pageFetch(admin, '/admin/cache/flush', { method: 'POST', body: { namespace: 'nothing-here' }, csrf: true });
    assert.equal(withToken.status, 200, withToken.body);
  });

  step('a virtual key sees only its own usage and gets 403 from admin pages and APIs', async () => {
    const { context, page } = await newPage();
    try {
      await login(page, createdKey.secret);
      await page.locator(tid('page-me')).waitFor();
      assert.equal(await page.locator(tid('nav-keys')).count(), 0);
      assert.equal(await page.locator(tid('nav-cache')).count(), 0);
      assert.equal(await page.locator(tid('nav-overview')).count(), 1);
      assert.ok(Number(await page.locator(tid('me-spend')).getAttribute('data-value')) > 0);
      await page.locator(tid('me-budget-bar')).waitFor();
      await screenshot(page, 'my-usage');
      for (const route of ['keys', 'cache', 'deployments', 'audit']) {
        await page.evaluate((r) => { location.hash = r; }, '#/' + route);
        await page.locator(tid('page-forbidden')).waitFor();
      }
      for (const path of ['/admin/keys', '/admin/cache/config', '/admin/audit', '/ui/api/deployments']) {
        const r = await pageFetch(page, path);
        assert.equal(r.status, 403, `${path}: ${r.body}`);
      }
      const put = await pageFetch(page, '/admin/cache/config', { method: 'PUT', body: { default_threshold: 0.5 }, csrf: true });
      assert.equal(put.status, 403);
      // Its overview is its own: one request so far (the SDK's), not the admin's traffic.
      await go(page, 'overview');
      await waitFor(async () => (await statValue(page, 'stat-requests')) >= 1, { what: 'the key\'s own requests' });
      const all = JSON.parse((await pageFetch(admin, '/ui/api/overview?range=1h')).body).totals.requests;
      assert.ok((await statValue(page, 'stat-requests')) < all, 'the key sees fewer requests than the admin');
    } finally {
      await context.close();
    }
  });

  step('edits, rotates and revokes a key in the UI', async () => {
    await go(admin, 'keys');
    const row = admin.locator(`${tid('key-row')}[data-id="${createdKey.id}"]`);
    // Edit its limits: the form comes prefilled; only the changed fields change.
    await row.locator(tid('key-edit')).click();
    const dlg = admin.locator(tid('key-edit-dialog'));
    assert.equal(await dlg.locator(tid('edit-rpm')).inputValue(), '600');
    assert.equal(await dlg.locator(tid('edit-budget')).inputValue(), '5');
    await dlg.locator(tid('edit-rpm')).fill('1200');
    await dlg.locator(tid('edit-tpm')).fill('50000');
    await dlg.locator(tid('edit-submit')).click();
    await dlg.waitFor({ state: 'detached' });
    await waitFor(async () => (await row.textContent()).includes('1.2k req/min'), { what: 'the new rpm in the key list' });
    const stored = JSON.parse((await pageFetch(admin, `/admin/keys/${createdKey.id}`)).body);
    assert.equal(stored.rpm, 1200);
    assert.equal(stored.tpm, 50000);
    assert.equal(stored.max_budget, 5);
    assert.equal(stored.budget_duration, '30d');
    assert.deepEqual(stored.models, [MODEL]);
    assert.equal(stored.alias, createdKey.alias);

    await row.locator(tid('key-rotate')).click();
    await admin.locator(tid('confirm-ok')).click();
    const secret = await admin.locator(tid('key-secret')).inputValue();
    assert.match(secret, /^sk-/);
    assert.notEqual(secret, createdKey.secret);
    await admin.locator(tid('key-secret-done')).click();
    // Both secrets work during the grace period.
    assert.equal((await chat(gw.baseUrl, secret, 'After rotation, new secret')).status, 200);
    assert.equal((await chat(gw.baseUrl, createdKey.secret, 'After rotation, old secret')).status, 200);

    await row.locator(tid('key-revoke')).click();
    await admin.locator(tid('confirm-ok')).click();
    await waitFor(async () => (await row.getAttribute('data-status')) === 'revoked', { what: 'the key to show as revoked' });
    assert.equal(await row.locator(tid('key-revoke')).count(), 0);
    assert.equal((await chat(gw.baseUrl, secret, 'After revocation')).status, 401);
  });

  step('is readable at phone width', async () => {
    const { context, page } = await newPage(PHONE);
    try {
      await login(page, MASTER_KEY);
      await page.locator(tid('stat-requests')).waitFor();
      await page.locator(tid('chart-requests')).waitFor({ timeout: 60_000 });
      // Nothing wider than the screen.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone`);
      await screenshot(page, 'overview-phone');
      await page.locator(tid('menu-toggle')).click();
      await page.locator(tid('nav-keys')).click();
      await page.locator(tid('page-keys')).waitFor();
      for (const route of ['keys', 'deployments', 'cache', 'spend', 'live', 'audit']) {
        await go(page, route);
        // Each page's main content has loaded (a table row, a stats card or an empty state).
        await page.locator(`${tid('page-' + route)} :is(tbody tr, .stat, .empty):visible`).first().waitFor();
        const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(wide <= 1, `#/${route} is ${wide}px wider than the phone`);
      }
    } finally {
      await context.close();
    }
  });

  step('logout locks the pages again', async () => {
    await go(admin, 'keys');
    await admin.locator(tid('logout')).click();
    await admin.locator(tid('login-form')).waitFor();
    assert.equal(await admin.locator(tid('nav')).isVisible(), false);
    await admin.evaluate(() => { location.hash = '#/cache'; });
    await admin.reload();
    await admin.locator(tid('login-form')).waitFor();
    assert.equal(await admin.locator(tid('page-cache')).count(), 0);
    for (const path of ['/ui/api/session', '/ui/api/overview?range=1h', '/admin/keys']) {
      const r = await pageFetch(admin, path);
      assert.equal(r.status, 401, `${path} after logout: ${r.body}`);
    }
  });

  step('raised no script errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});

// Test harness for the dashboard's browser tests: starts `sluice-mock-upstream` and the real
// `sluice` binary (ephemeral ports, a temp data dir, the semantic cache on with the repository's
// model), launches Debian's headless chromium through playwright-core, and offers small helpers
// (API calls with the master key, the openai Python SDK, screenshots). Never a timing assertion:
// everything waits on a condition with a generous timeout.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MASTER_KEY = 'sk-sluice-ui-test-master';
export const MODEL = 'gpt-4o-mini';
export const SCREENSHOTS = join(REPO, 'docs', 'screenshots');
const START_TIMEOUT_MS = 90_000;

function binDir() {
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO, process.env.CARGO_TARGET_DIR) : join(REPO, 'target');
  return join(target, 'debug');
}

/** Path of the sluice binary: $SLUICE_BIN, else <target>/debug/sluice. */
export function sluiceBin() {
  return process.env.SLUICE_BIN ? resolve(REPO, process.env.SLUICE_BIN) : join(binDir(), 'sluice');
}

/** Path of the mock upstream binary, next to sluice. */
export function mockBin() {
  return process.env.SLUICE_MOCK_UPSTREAM_BIN || join(dirname(sluiceBin()), 'sluice-mock-upstream');
}

/** Start a process and resolve with the first stdout line matching `re` (its match). */
function startProcess(cmd, args, { cwd, env, re, logPath }) {
  return new Promise((resolveStart, rejectStart) => {
    if (!existsSync(cmd)) {
      rejectStart(new Error(`${cmd} not found: run \`cargo build --bins\` (or set SLUICE_BIN)`));
      return;
    }
    const log = [];
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      rejectStart(new Error(`${cmd} did not report listening within ${START_TIMEOUT_MS / 1000} s\n${log.slice(-40).join('\n')}`));
    }, START_TIMEOUT_MS);
    child.stderr.on('data', (b) => {
      const text = b.toString();
      log.push(...text.split('\n'));
      if (log.length > 400) log.splice(0, log.length - 400);
      if (logPath) writeFileSync(logPath, text, { flag: 'a' });
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = line.match(re);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        resolveStart({ child, match: m, log });
      }
    });
    child.on('exit', (code, sig) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        rejectStart(new Error(`${cmd} exited (${code ?? sig}) before listening\n${log.slice(-40).join('\n')}`));
      }
    });
  });
}

function stopProcess(child) {
  return new Promise((res) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) { res(); return; }
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => { clearTimeout(t); res(); });
    child.kill('SIGTERM');
  });
}

/** Wait until `fn` returns a truthy value (polling); returns it. */
export async function waitFor(fn, { timeout = 30_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Start mock upstream + sluice; returns { baseUrl, stop, logPath }. */
export async function startGateway() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ui-'));
  const mock = await startProcess(mockBin(), ['--listen', '127.0.0.1:0'], {
    cwd: dir, env: process.env, re: /^mock upstream listening on (http:\/\/127\.0\.0\.1:\d+)/,
  });
  const upstream = mock.match[1];
  const models = join(REPO, 'models');
  // Two deployments in one group so the deployments page has a share of traffic to show.
  const config = `model_list:
  - model_name: ${MODEL}
    litellm_params:
      model: openai/${MODEL}
      api_base: ${upstream}/v1
      api_key: sk-mock-upstream
  - model_name: ${MODEL}
    litellm_params:
      model: openai/${MODEL}
      api_base: ${upstream}/v1
      api_key: sk-mock-upstream-2
  - model_name: mock
    litellm_params:
      model: mock/sluice-mock-1
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: ${MASTER_KEY}
sluice:
  data_dir: ${join(dir, 'state')}
  cache:
    enabled: true
    models_dir: ${models}
`;
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, config);
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
  for (const k of ['SLUICE_CONFIG', 'SLUICE_MASTER_KEY', 'OPENAI_API_KEY']) delete env[k];
  const logPath = join(dir, 'sluice.log');
  let gw;
  try {
    gw = await startProcess(sluiceBin(), ['serve', '--config', configPath, '--listen', '127.0.0.1:0'], {
      cwd: dir, env, re: /^sluice listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/, logPath,
    });
  } catch (e) {
    await stopProcess(mock.child);
    throw e;
  }
  const baseUrl = gw.match[1];
  await waitFor(async () => (await fetch(baseUrl + '/health/readiness')).status === 200,
    { timeout: START_TIMEOUT_MS, what: '/health/readiness' });
  return {
    baseUrl,
    upstream,
    logPath,
    dir,
    serverLog: () => gw.log.slice(-60).join('\n'),
    async stop() {
      await stopProcess(gw.child);
      await stopProcess(mock.child);
      if (!process.env.SLUICE_UI_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Launch headless Debian chromium (a fresh profile: Playwright gives each launch a new temp
 * --user-data-dir and deletes it on close). */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`${executablePath} not found: run scripts/setup.sh (installs Debian's chromium)`);
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Containers often have a tiny /dev/shm; chromium then crashes without this.
      '--disable-dev-shm-usage'],
  });
}

/** A chat completion through the gateway with a bearer key (the whole body read, also when
 * streamed); returns { status, cache, requestId, body }. */
export async function chat(baseUrl, key, content, { namespace, model = MODEL, user, stream = false } = {}) {
  const headers = { authorization: 'Bearer ' + key, 'content-type': 'application/json' };
  if (namespace) headers['x-sluice-cache-namespace'] = namespace;
  const body = { model, messages: [{ role: 'user', content }] };
  if (stream) body.stream = true;
  if (user) body.user = user;
  const r = await fetch(baseUrl + '/v1/chat/completions', { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, cache: r.headers.get('x-sluice-cache'), requestId: r.headers.get('x-request-id'), body: text };
}

/** Run a Python snippet with the repository's venv (openai SDK); resolves { code, stdout, stderr }. */
export function python(script, env = {}) {
  const py = join(REPO, '.venv', 'bin', 'python');
  if (!existsSync(py)) throw new Error(`${py} not found: run scripts/setup.sh`);
  return new Promise((res) => {
    execFile(py, ['-c', script], { env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      res({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Save a full-page screenshot as docs/screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Let charts and fonts settle on their final layout (a condition, not a timer).
  await page.evaluate(async () => {
    await document.fonts.ready;
    document.querySelectorAll('.toast').forEach((el) => el.remove());
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(SCREENSHOTS, name + '.png'), fullPage: true });
}

export { readFileSync };

// Starts a real `openguild serve` on a fresh data directory and a headless Debian Chromium
// driven by playwright-core. Screenshots go to e2e/screenshots/ (not committed).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = join(here, 'screenshots');

function serverBinary() {
  if (process.env.OPENGUILD_BIN) return process.env.OPENGUILD_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache/openguild/target');
  for (const p of [join(target, 'debug/openguild'), join(target, 'release/openguild')]) if (existsSync(p)) return p;
  throw new Error('No openguild binary: build it with `cargo build -p openguild-server` or set OPENGUILD_BIN');
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

/** `opts.port`: listen there (default: a free port); `opts.config`: openguild.toml text. */
// `opts`: `port`, `config` (TOML), `env` (more environment, e.g. the hub's name).
export async function startServer(opts = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'og-e2e-'));
  const port = opts.port ?? (await freePort());
  const extraEnv = {};
  if (opts.config) {
    writeFileSync(join(dataDir, 'openguild.toml'), opts.config);
    extraEnv.OPENGUILD_CONFIG = join(dataDir, 'openguild.toml');
  }
  const url = `http://127.0.0.1:${port}`;
  const log = [];
  const proc = spawn(serverBinary(), ['serve'], {
    env: {
      ...process.env,
      OPENGUILD_DATA_DIR: dataDir,
      OPENGUILD_LISTEN: `127.0.0.1:${port}`,
      OPENGUILD_UI_DIR: resolve(here, '../dist'),
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      ...extraEnv,
      ...(opts.env ?? {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => log.push(String(d)));
  proc.stderr.on('data', (d) => log.push(String(d)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`openguild serve exited (${proc.exitCode}):\n${log.join('')}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`openguild serve did not get ready:\n${log.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startBrowser() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

/** A fresh browser context (its own storage: one person) with a page, errors collected. */
export async function person(browser, url, opts = {}) {
  const context = await browser.newContext({ baseURL: url, viewport: opts.viewport ?? { width: 1280, height: 800 }, colorScheme: opts.colorScheme ?? 'dark', ...opts.context });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && errors.push(new Error(m.text())));
  page.setDefaultTimeout(10_000);
  return { context, page, errors };
}

export async function shot(page, name) {
  await page.waitForTimeout(150); // let transitions settle
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** Registers `handle` through the web client's own form (password `correct horse battery`). */
export async function register(page, handle) {
  await page.goto('/');
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Handle').fill(handle);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('navigation', { name: 'Servers' }).waitFor();
}

/** A GraphQL call with the page's own session. */
export function api(page, query, variables = {}) {
  return page.evaluate(
    async ([query, variables]) => {
      const r = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${localStorage.getItem('og.token')}` },
        body: JSON.stringify({ query, variables }),
      });
      return r.json();
    },
    [query, variables],
  );
}

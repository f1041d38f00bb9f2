// The client's budgets: what a first load fetches (index.html's scripts and styles and what
// they import statically) under 200 KB gzipped; livekit-client, loaded only when someone joins
// voice, is a chunk of its own that a first load does not fetch, with a budget of its own;
// and the first contentful paint of a cold load on loopback, reported (a figure for
// docs/PERFORMANCE.md, not a timed assertion).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, startBrowser, person } from './harness.mjs';

const assets = join(dirname(fileURLToPath(import.meta.url)), '../dist/assets');
let server, browser;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const gz = (f) => gzipSync(readFileSync(join(assets, f)), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

/** The assets a first load fetches: index.html's, and what they import statically. */
function initialAssets() {
  const html = readFileSync(join(assets, '../index.html'), 'utf8');
  const todo = [...html.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)].map((m) => m[1]);
  const seen = new Set();
  while (todo.length) {
    const f = todo.pop();
    if (seen.has(f)) continue;
    seen.add(f);
    if (!f.endsWith('.js')) continue;
    // Static imports of other chunks (from"./x.js", import"./x.js"); a dynamic import() is not one.
    for (const m of readFileSync(join(assets, f), 'utf8').matchAll(/(?:from|import)\s*["']\.\/([^"']+\.js)["']/g)) todo.push(m[1]);
  }
  return [...seen];
}

test('the first load is under 200 KB gzipped', () => {
  const all = readdirSync(assets).filter((f) => /\.(js|css)$/.test(f));
  const initial = initialAssets();
  const bytes = initial.reduce((n, f) => n + gz(f), 0);
  const lazy = all.filter((f) => !initial.includes(f));
  console.log(`first load: ${kb(bytes)} gzipped (${initial.join(', ')})`);
  for (const f of lazy) console.log(`loaded on demand: ${f}, ${kb(gz(f))} gzipped`);
  assert.ok(initial.some((f) => f.endsWith('.js')), 'a built script');
  assert.ok(bytes < 200 * 1024, `${bytes} bytes gzipped is over the 200 KB budget`);
});

test('livekit-client is loaded only when someone joins voice, and within its own budget', () => {
  const initial = initialAssets();
  const voice = readdirSync(assets).filter((f) => /^livekit-client.*\.js$/.test(f));
  assert.equal(voice.length, 1, `one livekit-client chunk: ${voice}`);
  assert.ok(!initial.includes(voice[0]), 'not part of the first load');
  const bytes = gz(voice[0]);
  assert.ok(bytes < 200 * 1024, `${bytes} bytes gzipped is over the voice chunk's 200 KB budget`);
});

test('a cold load paints, served gzipped', async () => {
  const { page, context } = await person(browser, server.url);
  const encodings = [];
  const fetched = [];
  page.on('response', (r) => r.url().includes('/assets/') && (encodings.push(r.headers()['content-encoding']), fetched.push(r.url())));
  await page.goto('/', { waitUntil: 'load' });
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null);
  console.log(`first contentful paint, cold load on loopback: ${fcp?.toFixed(0)} ms`);
  assert.ok(fcp !== null, 'the browser reported a first contentful paint');
  assert.ok(encodings.length > 0 && encodings.every((e) => e === 'gzip'), `assets gzipped: ${encodings}`);
  assert.ok(!fetched.some((u) => /livekit/.test(u)), `no voice code on a first load: ${fetched}`);
  await context.close();
});

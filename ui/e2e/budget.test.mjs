// The client's budgets: JS+CSS under 200 KB gzipped, and the first contentful paint of a
// cold load on loopback, reported (a figure for docs/PERFORMANCE.md, not a timed assertion).
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

test('the bundle is under 200 KB gzipped', () => {
  const files = readdirSync(assets).filter((f) => /\.(js|css)$/.test(f));
  const bytes = files.reduce((n, f) => n + gzipSync(readFileSync(join(assets, f)), { level: 9 }).length, 0);
  console.log(`bundle: ${(bytes / 1024).toFixed(1)} KB gzipped (${files.join(', ')})`);
  assert.ok(files.some((f) => f.endsWith('.js')), 'a built script');
  assert.ok(bytes < 200 * 1024, `${bytes} bytes gzipped is over the 200 KB budget`);
});

test('a cold load paints, served gzipped', async () => {
  const { page, context } = await person(browser, server.url);
  const encodings = [];
  page.on('response', (r) => r.url().includes('/assets/') && encodings.push(r.headers()['content-encoding']));
  await page.goto('/', { waitUntil: 'load' });
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null);
  console.log(`first contentful paint, cold load on loopback: ${fcp?.toFixed(0)} ms`);
  assert.ok(fcp !== null, 'the browser reported a first contentful paint');
  assert.ok(encodings.length > 0 && encodings.every((e) => e === 'gzip'), `assets gzipped: ${encodings}`);
  await context.close();
});

// Single sign-on in the browser, through a real OpenID provider (`oidc-provider` from npm,
// the same harness the Rust SSO test uses, in tests/oidc): the login page shows a button
// for the configured provider; a first login asks for a handle; a later one goes straight in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, startBrowser, person, freePort, shot } from './harness.mjs';

const oidcDir = join(dirname(fileURLToPath(import.meta.url)), '../../tests/oidc');
let provider, server, browser;

function startProvider(redirect) {
  if (!existsSync(join(oidcDir, 'node_modules/oidc-provider'))) {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: oidcDir, stdio: 'inherit' });
  }
  const child = spawn('node', [join(oidcDir, 'provider.mjs')], {
    env: { ...process.env, OIDC_PORT: '0', OIDC_CLIENT_ID: 'openguild', OIDC_CLIENT_SECRET: 'e2e-secret', OIDC_REDIRECT_URIS: redirect },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return new Promise((ok, fail) => {
    child.on('exit', (code) => fail(new Error(`the OpenID provider exited (${code})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^oidc provider ready on (\S+)/.exec(line);
      if (m) ok({ url: m[1], stop: () => child.kill('SIGTERM') });
    });
  });
}

before(async () => {
  const port = await freePort();
  provider = await startProvider(`http://127.0.0.1:${port}/auth/oidc/test/callback`);
  const config = `[api.oidc.test]\nissuer = "${provider.url}"\nclient_id = "openguild"\nclient_secret = "e2e-secret"\ndisplay_name = "Test SSO"\n`;
  server = await startServer({ port, config });
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  provider?.stop();
});

test('a first single sign-on picks a handle; the next one goes straight in', async () => {
  const { page } = await person(browser, server.url);
  await page.goto('/');
  const sso = page.getByRole('link', { name: 'Continue with Test SSO' });
  await sso.click();
  await page.getByRole('heading', { name: 'Pick your handle' }).waitFor();
  assert.equal(await page.getByRole('textbox', { name: 'Handle' }).inputValue(), 'alice', "the provider's username is suggested");
  await shot(page, 'sso-signup-dark');
  await page.getByRole('textbox', { name: 'Handle' }).fill('alice_sso');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('navigation', { name: 'Servers' }).waitFor();
  assert.equal(await page.locator('.user-panel .me').textContent(), 'alice_sso');

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('link', { name: 'Continue with Test SSO' }).click();
  await page.getByRole('navigation', { name: 'Servers' }).waitFor();
  assert.equal(await page.locator('.user-panel .me').textContent(), 'alice_sso', 'the same person, no second signup');
});

// Two hubs in one browser: ann runs a guild on hub A; bob, whose account is on hub B, joins
// it from B's web client with A's invite code (`CODE@hub-a.test`) and they chat both ways,
// live, each on their own hub.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startBrowser, person, freePort, register } from './harness.mjs';

let hubA, hubB, browser, ann, bob, code;

before(async () => {
  const [portA, portB] = [await freePort(), await freePort()];
  const peers = (name, port) => `[federation]\npeers = ["${name}=http://127.0.0.1:${port}"]\n`;
  hubA = await startServer({ port: portA, config: peers('hub-b.test', portB), env: { OPENGUILD_SERVER_NAME: 'hub-a.test' } });
  hubB = await startServer({ port: portB, config: peers('hub-a.test', portA), env: { OPENGUILD_SERVER_NAME: 'hub-b.test' } });
  browser = await startBrowser();
  ann = await person(browser, hubA.url);
  bob = await person(browser, hubB.url, { colorScheme: 'light' });
});

after(async () => {
  await browser?.close();
  await hubA?.stop();
  await hubB?.stop();
  for (const p of [ann, bob]) if (p?.errors.length) console.error('page errors:', p.errors);
});

const message = (page, text) => page.getByRole('feed').getByRole('article').filter({ hasText: text });

test('ann on hub A makes a guild and an invite code for other hubs', async () => {
  await register(ann.page, 'ann');
  const p = ann.page;
  await p.getByRole('button', { name: 'Create a server' }).click();
  await p.getByLabel('Server name').fill('Two Hubs');
  await p.getByRole('button', { name: 'Create', exact: true }).click();
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Two Hubs' }).waitFor();
  await p.getByRole('button', { name: 'Server settings' }).click();
  await p.getByRole('tab', { name: 'Channels' }).click();
  await p.getByLabel('Channel name').fill('bridge');
  await p.getByRole('button', { name: 'Create channel' }).click();
  await p.getByRole('button', { name: '#bridge' }).waitFor();
  await p.keyboard.press('Escape');
  await p.getByRole('link', { name: /^bridge, text channel/ }).click();
  await p.getByRole('button', { name: 'Invite people' }).click();
  const field = p.getByLabel('Invite code for other hubs');
  await field.waitFor();
  code = await field.inputValue();
  assert.match(code, /^[A-Za-z0-9]+@hub-a\.test$/);
  await p.keyboard.press('Escape');
});

test('bob on hub B joins with it from his own hub and sees the guild in his rail', async () => {
  await register(bob.page, 'bob');
  const p = bob.page;
  await p.goto(`/invite/${code}`);
  await p.getByRole('button', { name: 'Accept invite' }).click();
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Two Hubs' }).waitFor();
  await p.getByRole('link', { name: /^bridge, text channel/ }).click();
  await p.getByRole('textbox', { name: 'Message #bridge' }).waitFor();
  // On B, ann is shown with her hub.
  await p.getByRole('complementary', { name: 'Members' }).getByRole('button', { name: /^ann of hub-a\.test,/ }).waitFor();
});

test('they chat both ways, live, each on their own hub', async () => {
  const a = ann.page, b = bob.page;
  await b.getByRole('textbox', { name: 'Message #bridge' }).fill('hello from hub B');
  await b.keyboard.press('Enter');
  await message(a, 'hello from hub B').waitFor();
  await a.getByRole('textbox', { name: 'Message #bridge' }).fill('welcome over, bob');
  await a.keyboard.press('Enter');
  await message(b, 'welcome over, bob').waitFor();
  // And on A, bob is shown with his.
  await a.getByRole('complementary', { name: 'Members' }).getByRole('button', { name: /^bob of hub-b\.test,/ }).waitFor();
});

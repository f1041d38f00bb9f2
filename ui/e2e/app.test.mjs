// Two people in two browser contexts against a real server: register, make a guild,
// invite, chat live, moderate, read the audit log, and move around by keyboard alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startBrowser, person, shot } from './harness.mjs';

let server, browser, ann, bob;
let guildUrl, invite;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  ann = await person(browser, server.url);
  bob = await person(browser, server.url, { colorScheme: 'light' });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const p of [ann, bob]) if (p?.errors.length) console.error('page errors:', p.errors);
});

async function register(page, handle, screenshot) {
  await page.goto('/');
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  if (screenshot) await shot(page, screenshot);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Handle').fill(handle);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('navigation', { name: 'Servers' }).waitFor();
}

const timeline = (page) => page.getByRole('feed');
const message = (page, text) => timeline(page).getByRole('article').filter({ hasText: text });

test('two people register', async () => {
  await register(ann.page, 'ann', 'login-dark');
  await register(bob.page, 'bob', 'login-light');
  assert.equal(await ann.page.locator('.user-panel .me').textContent(), 'ann');
});

test('ann creates a guild, a channel and an invite', async () => {
  const p = ann.page;
  await p.getByRole('button', { name: 'Create a server' }).click();
  await p.getByLabel('Server name').fill('Makers Co-op');
  await p.getByRole('button', { name: 'Create', exact: true }).click();
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Makers Co-op' }).waitFor();
  await p.getByRole('button', { name: 'Server settings' }).click();
  await p.getByRole('tab', { name: 'Channels' }).click();
  await p.getByLabel('Channel name').fill('workshop');
  await p.getByRole('button', { name: 'Create channel' }).click();
  await p.getByRole('button', { name: '#workshop' }).waitFor();
  await p.keyboard.press('Escape');
  await p.getByRole('link', { name: /^workshop, text channel/ }).click();
  await p.getByRole('heading', { name: 'workshop', exact: true }).waitFor();
  guildUrl = new URL(p.url()).pathname;
  await p.getByRole('button', { name: 'Invite people' }).click();
  const link = p.getByLabel('Invite link');
  await link.waitFor();
  invite = await link.inputValue();
  assert.match(invite, /\/invite\/[A-Za-z0-9]+$/);
  await p.keyboard.press('Escape');
});

test('bob joins through the invite link', async () => {
  const p = bob.page;
  await p.goto(new URL(invite).pathname);
  await p.getByRole('button', { name: 'Accept invite' }).click();
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Makers Co-op' }).waitFor();
  await p.getByRole('link', { name: /^workshop, text channel/ }).click();
  await p.getByRole('textbox', { name: 'Message #workshop' }).waitFor();
  // Ann sees bob in the member list, live.
  await ann.page.getByRole('complementary', { name: 'Members' }).getByRole('button', { name: 'bob, online' }).waitFor();
});

test('messages, edits, replies and reactions appear live on both sides', async () => {
  const a = ann.page, b = bob.page;
  await a.getByRole('textbox', { name: 'Message #workshop' }).fill('Welcome **everyone**! Say hi to @bob');
  await a.keyboard.press('Enter');
  await message(b, 'Welcome everyone!').waitFor();
  assert.equal(await message(b, 'Welcome').locator('strong').first().textContent(), 'everyone');
  assert.equal(await message(b, 'Welcome').locator('.mention.me').count(), 1, 'bob sees his mention highlighted');

  // Shift+Enter makes a new line; Enter sends.
  const box = b.getByRole('textbox', { name: 'Message #workshop' });
  await box.fill('hi ann');
  await box.press('Shift+Enter');
  await box.pressSequentially('glad to be here');
  await box.press('Enter');
  await message(a, 'glad to be here').waitFor();

  // ↑ edits bob's last message.
  await box.press('ArrowUp');
  const edit = b.getByRole('textbox', { name: 'Edit message' });
  await edit.fill('hi ann, glad to be here (edited by me)');
  await edit.press('Enter');
  await message(a, 'edited by me').getByText('(edited)').waitFor();

  // Ann replies to bob's message.
  await message(a, 'edited by me').hover();
  await message(a, 'edited by me').getByRole('button', { name: 'Reply' }).click();
  await a.getByRole('textbox', { name: 'Message #workshop' }).fill('welcome aboard');
  await a.keyboard.press('Enter');
  const reply = message(b, 'welcome aboard');
  await reply.getByRole('button', { name: 'Jump to the message this replies to' }).waitFor();

  // Bob reacts to ann's welcome; ann sees the count.
  await message(b, 'Welcome everyone').hover();
  await message(b, 'Welcome everyone').getByRole('button', { name: 'Add reaction' }).click();
  await b.getByRole('button', { name: 'React with 🎉' }).click();
  await message(a, 'Welcome everyone').getByRole('button', { name: '🎉 1' }).waitFor();
  await shot(a, 'chat-dark');
  await shot(b, 'chat-light');
});

test('ann times bob out, and bob’s composer says so', async () => {
  const a = ann.page, b = bob.page;
  await a.getByRole('complementary', { name: 'Members' }).getByRole('button', { name: /^bob, / }).click();
  await a.getByRole('button', { name: 'Time out…' }).click();
  await a.getByLabel('10 minutes').check();
  await a.getByLabel('Reason (shown in the audit log)').fill('cooling off after a heated thread');
  await shot(a, 'moderation-dark');
  await a.getByRole('button', { name: 'Time out', exact: true }).click();
  const blocked = b.locator('.composer-blocked');
  await blocked.waitFor();
  assert.match(await blocked.textContent(), /timed out/i);
  await shot(b, 'timed-out-light');
  // The timed-out member can read but not post: the text box is gone.
  assert.equal(await b.getByRole('textbox', { name: 'Message #workshop' }).count(), 0);
});

test('the audit log viewer shows the timeout with its reason, and the state then', async () => {
  const a = ann.page;
  await a.getByRole('button', { name: 'Server settings' }).click();
  await a.getByRole('tab', { name: 'Audit log' }).click();
  await a.getByLabel('What').selectOption('member.timed_out');
  await a.getByRole('button', { name: 'Filter' }).click();
  const entry = a.locator('.audit-entry[data-kind="member.timed_out"]');
  await entry.first().waitFor();
  // The unfiltered list has a timeout too: wait for the filtered answer to replace it.
  await a.locator('.audit-entry:not([data-kind="member.timed_out"])').first().waitFor({ state: 'detached' });
  assert.equal(await a.locator('.audit-entry').count(), 1, 'the filter keeps only the timeout');
  assert.match(await entry.textContent(), /cooling off after a heated thread/);
  assert.match(await entry.locator('.event-id code').textContent(), /^\$/);
  await shot(a, 'audit-log-dark');
  await entry.getByRole('button', { name: 'State at this moment' }).click();
  const snap = a.getByRole('region', { name: 'State at this moment' });
  await snap.waitFor();
  assert.match(await snap.textContent(), /Timed out:\s*bob until/);
  await shot(a, 'audit-state-dark');
  await a.keyboard.press('Escape');
});

test('keyboard only: skip link, rails and arrow keys reach the composer', async () => {
  const a = ann.page;
  await a.goto(guildUrl);
  await a.getByRole('textbox', { name: 'Message #workshop' }).waitFor();
  // Skip link: the first Tab stop, straight to the message box.
  await a.keyboard.press('Tab');
  assert.equal(await a.evaluate(() => document.activeElement?.textContent), 'Skip to the message box');
  await a.keyboard.press('Enter');
  assert.equal(await a.evaluate(() => document.activeElement?.id), 'composer');
  // Into the server rail, then along the channel rail with arrow keys, then on to the composer.
  await a.getByRole('link', { name: 'Makers Co-op' }).focus();
  await a.keyboard.press('Tab');
  for (let i = 0; i < 8 && !(await a.evaluate(() => document.activeElement?.classList.contains('channel-item'))); i++) await a.keyboard.press('Tab');
  await a.keyboard.press('ArrowDown');
  assert.match(await a.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? ''), /workshop/);
  await a.keyboard.press('Enter');
  for (let i = 0; i < 30 && (await a.evaluate(() => document.activeElement?.id)) !== 'composer'; i++) await a.keyboard.press('Tab');
  assert.equal(await a.evaluate(() => document.activeElement?.id), 'composer');
  await a.keyboard.type('sent without a mouse');
  await a.keyboard.press('Enter');
  await message(bob.page, 'sent without a mouse').waitFor();
});

test('no errors in either page', () => {
  assert.deepEqual(ann.errors.map(String), []);
  assert.deepEqual(bob.errors.map(String), []);
});

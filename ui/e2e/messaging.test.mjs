// Everyday messaging with two people against a real server: a direct message with its
// unread badge, a pin and the pins panel, unread and mention badges on a guild channel that
// clear once read (and stay cleared after a reload: the marker is the server's), and a
// reaction that is still mine after a reload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startBrowser, person, shot, register } from './harness.mjs';

let server, browser, ann, bob, bob2;
let channelName, bobId;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  ann = await person(browser, server.url);
  bob = await person(browser, server.url, { colorScheme: 'light' });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const p of [ann, bob, bob2]) if (p?.errors.length) console.error('page errors:', p.errors);
});

const timeline = (page) => page.getByRole('feed');
const message = (page, text) => timeline(page).getByRole('article').filter({ hasText: text });
const servers = (page) => page.getByRole('navigation', { name: 'Servers' });
const dmIcon = (page) => servers(page).getByRole('link', { name: /^Direct messages/ });
const guildIcon = (page) => servers(page).getByRole('link', { name: /^Read Club/ });
const label = (locator) => locator.getAttribute('aria-label');
/** The answer to the next markRead the page sends, so a reload does not cut it off. */
const nextMarkRead = (page) => page.waitForResponse((r) => r.url().endsWith('/graphql') && /MarkRead/.test(r.request().postData() ?? ''));

/** Waits until `locator`'s accessible name is `expected` (a badge comes and goes live). */
async function labelBecomes(locator, expected, what) {
  const deadline = Date.now() + 10_000;
  let seen;
  while (Date.now() < deadline) {
    seen = await label(locator);
    if (expected instanceof RegExp ? expected.test(seen ?? '') : seen === expected) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: label is ${JSON.stringify(seen)}, expected ${expected}`);
}

test('ann and bob register and share a guild', async () => {
  await register(ann.page, 'ann');
  await register(bob.page, 'bob');
  const a = ann.page;
  await a.getByRole('button', { name: 'Create a server' }).click();
  await a.getByLabel('Server name').fill('Read Club');
  await a.getByRole('button', { name: 'Create', exact: true }).click();
  await a.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Read Club' }).waitFor();
  channelName = 'notices';
  await a.getByRole('button', { name: 'Server settings' }).click();
  await a.getByRole('tab', { name: 'Channels' }).click();
  await a.getByLabel('Channel name').fill(channelName);
  await a.getByRole('button', { name: 'Create channel' }).click();
  await a.getByRole('button', { name: `#${channelName}` }).waitFor();
  await a.keyboard.press('Escape');
  await a.getByRole('link', { name: new RegExp(`^${channelName}, text channel`) }).click();
  await a.getByRole('textbox', { name: `Message #${channelName}` }).waitFor();
  await a.getByRole('button', { name: 'Invite people' }).click();
  const link = a.getByLabel('Invite link');
  await link.waitFor();
  const invite = await link.inputValue();
  await a.keyboard.press('Escape');
  await bob.page.goto(new URL(invite).pathname);
  await bob.page.getByRole('button', { name: 'Accept invite' }).click();
  await bob.page.getByRole('textbox', { name: `Message #${channelName}` }).waitFor();
});

test('ann opens a DM with bob and sends a message; bob sees it listed with a badge', async () => {
  const a = ann.page, b = bob.page;
  await dmIcon(a).click();
  await a.getByRole('button', { name: 'New message' }).click();
  await a.getByLabel(/^To/).fill('bob');
  await a.getByRole('button', { name: 'Start' }).click();
  const box = a.getByRole('textbox', { name: 'Message @bob' });
  await box.fill('hello bob, just between us');
  await box.press('Enter');
  await message(a, 'just between us').waitFor();
  // The DM's header names the others by id: a mention needs the whole id.
  bobId = await a.locator('.chat-head .topic').textContent();
  assert.match(bobId, /^@bob:/);

  // Bob is in the guild: the DM icon in the server rail shows it live, then the DM list.
  await labelBecomes(dmIcon(b), 'Direct messages, 1 mention', "bob's DM icon");
  await dmIcon(b).click();
  const entry = b.getByRole('navigation', { name: 'Channels' }).getByRole('link', { name: /^ann, direct message/ });
  await labelBecomes(entry, 'ann, direct message, 1 mention', "bob's DM entry");
  await shot(b, 'dm-unread-light');
  const marked = nextMarkRead(b);
  await entry.click();
  await message(b, 'just between us').waitFor();
  await b.getByRole('status').filter({ hasText: '1 new message' }).waitFor();
  await labelBecomes(dmIcon(b), 'Direct messages', "bob's DM icon once read");
  await shot(b, 'dm-open-light');

  // The read marker is the server's: a reload shows no badge either.
  await marked;
  await b.reload();
  await message(b, 'just between us').waitFor();
  await b.getByRole('link', { name: /^Read Club/ }).click();
  await b.getByRole('textbox', { name: `Message #${channelName}` }).waitFor();
  await labelBecomes(dmIcon(b), 'Direct messages', "bob's DM icon after a reload");
  await dmIcon(b).click();
  await b.getByRole('link', { name: 'ann, direct message' }).click();
  await message(b, 'just between us').waitFor();
});

test('bob pins the message; it shows in the pins panel on both sides', async () => {
  const a = ann.page, b = bob.page;
  await message(b, 'just between us').hover();
  await message(b, 'just between us').getByRole('button', { name: 'Pin', exact: true }).click();
  await b.getByRole('button', { name: 'Pinned messages' }).click();
  const panel = b.getByRole('region', { name: 'Pinned messages' });
  await panel.getByText('just between us').waitFor();
  await shot(b, 'pins-light');
  // Ann hears of the pin live.
  await labelBecomes(message(a, 'just between us'), /, pinned:/, "ann's copy of the pinned message");
  await a.getByRole('button', { name: 'Pinned messages' }).click();
  await a.getByRole('region', { name: 'Pinned messages' }).getByText('just between us').waitFor();
  await a.getByRole('button', { name: 'Pinned messages' }).click();
});

test("bob's other device hears that he read the DM, and its badge clears", async () => {
  const a = ann.page, b = bob.page;
  bob2 = await person(browser, server.url);
  const b2 = bob2.page;
  await b2.goto('/');
  await b2.getByLabel('Handle').fill('bob');
  await b2.getByLabel('Password').fill('correct horse battery');
  await b2.getByRole('button', { name: 'Log in', exact: true }).click();
  await servers(b2).waitFor();
  await labelBecomes(dmIcon(b2), 'Direct messages', "bob's second device, all read");
  await guildIcon(b).click();
  await b.getByRole('textbox', { name: `Message #${channelName}` }).waitFor();

  const box = a.getByRole('textbox', { name: 'Message @bob' });
  await box.fill('one more thing');
  await box.press('Enter');
  await labelBecomes(dmIcon(b2), 'Direct messages, 1 mention', "bob's second device");
  await labelBecomes(dmIcon(b), 'Direct messages, 1 mention', "bob's first device");
  // Bob reads it on his first device; the second hears of the marker (account.read).
  await dmIcon(b).click();
  await b.getByRole('link', { name: /^ann, direct message/ }).click();
  await message(b, 'one more thing').waitFor();
  await labelBecomes(dmIcon(b2), 'Direct messages', "bob's second device once he read on the first");
});

test('a guild channel gets a badge for a mention by ann, and it clears once bob reads it', async () => {
  const a = ann.page, b = bob.page;
  // Bob stays in the DM; ann writes in the guild.
  await guildIcon(a).click();
  const box = a.getByRole('textbox', { name: `Message #${channelName}` });
  await box.fill(`${bobId} the meeting moved to Friday`);
  await box.press('Enter');
  await message(a, 'meeting moved').waitFor();
  await labelBecomes(guildIcon(b), 'Read Club, 1 mention', "bob's guild icon");
  await shot(b, 'guild-mention-light');

  await guildIcon(b).click();
  await message(b, 'meeting moved').waitFor();
  // Opened with unread messages: the bar jumps to the first.
  const bar = b.getByRole('button', { name: /new message.*Jump to first unread/ });
  await bar.waitFor();
  await bar.click();
  await dmIcon(b).click();
  await labelBecomes(guildIcon(b), 'Read Club', "bob's guild icon once read");
});

test('a post without a mention makes the channel unread, and the server says so after a reload', async () => {
  const a = ann.page, b = bob.page;
  // Bob is on the DM list; ann posts in the guild without naming him (no live event for that).
  const box = a.getByRole('textbox', { name: `Message #${channelName}` });
  await box.fill('minutes are in the shared folder');
  await box.press('Enter');
  await message(a, 'shared folder').waitFor();
  await b.reload();
  await labelBecomes(guildIcon(b), 'Read Club, unread', "bob's guild icon after a reload");
  const marked = nextMarkRead(b);
  await guildIcon(b).click();
  await labelBecomes(
    b.getByRole('navigation', { name: 'Channels' }).getByRole('link', { name: new RegExp(`^${channelName}, `) }),
    `${channelName}, text channel`,
    'the open channel',
  );
  await message(b, 'shared folder').waitFor();
  await dmIcon(b).click();
  await labelBecomes(guildIcon(b), 'Read Club', "bob's guild icon once read");
  await marked;
  await b.reload();
  await servers(b).waitFor();
  await labelBecomes(guildIcon(b), 'Read Club', "bob's guild icon after another reload");
});

test('a reaction of mine is highlighted, still mine after a reload, and pressing it takes it back', async () => {
  const b = bob.page;
  await guildIcon(b).click();
  const m = message(b, 'shared folder');
  await m.hover();
  await m.getByRole('button', { name: 'Add reaction' }).click();
  await b.getByRole('button', { name: 'React with 🎉' }).click();
  await m.getByRole('button', { name: '🎉 1', pressed: true }).waitFor();
  await b.reload();
  await message(b, 'shared folder').getByRole('button', { name: '🎉 1', pressed: true }).waitFor();
  await message(b, 'shared folder').getByRole('button', { name: '🎉 1' }).click();
  await message(b, 'shared folder').getByRole('button', { name: /^🎉/ }).waitFor({ state: 'detached' });
  // Ann's copy follows live.
  await message(ann.page, 'shared folder').getByRole('button', { name: /^🎉/ }).waitFor({ state: 'detached' });
});

test("a member's menu opens the DM there is, and blocks and unblocks", async () => {
  const b = bob.page;
  await b.getByRole('complementary', { name: 'Members' }).getByRole('button', { name: /^ann, / }).click();
  await b.getByRole('button', { name: 'Message', exact: true }).click();
  await message(b, 'just between us').waitFor();
  assert.equal(await b.getByRole('navigation', { name: 'Channels' }).getByRole('link', { name: /^ann, direct message/ }).count(), 1, 'the same DM, not a second one');
  // In the DM, the author's name opens the same menu, without the guild's actions.
  await message(b, 'just between us').getByRole('button', { name: 'ann' }).click();
  const menu = b.getByRole('dialog', { name: '@ann' });
  b.once('dialog', (d) => d.accept());
  await menu.getByRole('button', { name: 'Block' }).click();
  await menu.getByText('· blocked').waitFor();
  await menu.getByRole('button', { name: 'Unblock' }).click();
  await menu.getByRole('button', { name: 'Block' }).waitFor();
  await b.keyboard.press('Escape');
});

test('no errors in any page', () => {
  assert.deepEqual(ann.errors.map(String), []);
  assert.deepEqual(bob.errors.map(String), []);
  assert.deepEqual(bob2?.errors.map(String) ?? [], []);
});

// The rest of a creator's and a member's day: categories, channel permission overwrites,
// roles (created, given permissions, dragged into order), invites (limited, revoked),
// a report taken and resolved, search, unread markers, paging back through history, the
// phone layout, and leaving. Screenshots of the settings views in both themes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startBrowser, person, shot, register, api } from './harness.mjs';

let server, browser, ann, bob;

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  ann = await person(browser, server.url, { colorScheme: 'light' });
  bob = await person(browser, server.url);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Closes any dialog a failed step left open, so one failure does not fail the rest. */
async function closeDialogs(page) {
  for (let i = 0; i < 3 && (await page.locator('dialog[open]').count()); i++) await page.keyboard.press('Escape');
}

const settings = async (page, tab) => {
  await closeDialogs(page);
  await page.getByRole('button', { name: 'Server settings' }).click();
  await page.getByRole('tab', { name: tab }).click();
};
const channelLink = (page, name) => page.getByRole('navigation', { name: 'Channels' }).getByRole('link', { name: new RegExp(`^${name}, `) });
const message = (page, text) => page.getByRole('feed').getByRole('article').filter({ hasText: text });

let invite;

test('ann sets up categories, channels and a private staff room', async () => {
  await register(ann.page, 'ann');
  await register(bob.page, 'bob');
  const p = ann.page;
  await p.getByRole('button', { name: 'Create a server' }).click();
  await p.getByLabel('Server name').fill('Night Market');
  await p.getByRole('button', { name: 'Create', exact: true }).click();
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Night Market' }).waitFor();
  await settings(p, 'Channels');
  await p.getByLabel('Category name').fill('Stalls');
  await p.getByRole('button', { name: 'Create category' }).click();
  await p.getByRole('button', { name: 'Rename category Stalls' }).waitFor();
  for (const [name, cat] of [['food', 'Stalls'], ['crafts', 'Stalls'], ['staff', null]]) {
    await p.getByLabel('Channel name').fill(name);
    await p.getByLabel('In category').selectOption({ label: cat ?? 'none' });
    await p.getByRole('button', { name: 'Create channel' }).click();
    await p.getByRole('button', { name: `#${name}` }).waitFor();
  }
  // The staff room: @everyone may not see it.
  await p.getByRole('button', { name: '#staff' }).click();
  await p.getByLabel('Topic').fill('organisers only');
  await p.getByRole('button', { name: 'Save', exact: true }).click();
  await p.getByLabel('For').selectOption({ label: 'role @everyone' });
  await p.getByRole('button', { name: 'Edit', exact: true }).click();
  await p.getByRole('radio', { name: 'View channels: deny' }).check();
  await p.getByRole('button', { name: 'Save permissions' }).click();
  await p.getByText(/role @everyone.*deny View channels/).waitFor();
  await shot(p, 'settings-channels-light');
  await p.keyboard.press('Escape');
  // Categories group the channel rail.
  await p.getByRole('navigation', { name: 'Channels' }).getByRole('button', { name: /Stalls/ }).waitFor();
  await channelLink(p, 'staff').waitFor();
});

test('roles: created, given permissions, dragged into order', async () => {
  const p = ann.page;
  await settings(p, 'Roles');
  for (const name of ['Moderators', 'Helpers']) {
    await p.getByLabel('New role').fill(name);
    await p.getByRole('button', { name: 'Create', exact: true }).click();
    await p.locator(`.role-row[data-role="${name}"]`).waitFor();
  }
  await p.locator('.role-row[data-role="Moderators"]').getByRole('button', { name: 'Moderators', exact: true }).click();
  await p.getByRole('checkbox', { name: /Time out members/ }).check();
  await p.getByRole('checkbox', { name: /Kick members/ }).check();
  await p.getByRole('button', { name: 'Save role' }).click();
  await p.getByText('Saved Moderators.').waitFor();
  // A new role starts lowest, just above @everyone; drag Helpers above Moderators.
  const order = () => p.locator('.role-row[data-role]').evaluateAll((rows) => rows.map((r) => r.dataset.role));
  assert.deepEqual(await order(), ['Moderators', 'Helpers']);
  await p.locator('.role-row[data-role="Helpers"] .grip').dragTo(p.locator('.role-row[data-role="Moderators"]'));
  await p.waitForFunction(() => document.querySelector('.role-row[data-role]')?.getAttribute('data-role') === 'Helpers');
  // And back with the keyboard-reachable buttons.
  await p.getByRole('button', { name: 'Move Helpers down' }).click();
  await p.waitForFunction(() => document.querySelector('.role-row[data-role]')?.getAttribute('data-role') === 'Moderators');
  assert.deepEqual(await order(), ['Moderators', 'Helpers']);
  await shot(p, 'settings-roles-light');
  await p.keyboard.press('Escape');
  await p.getByRole('button', { name: 'Use the dark theme' }).click();
  await settings(p, 'Roles');
  await p.locator('.role-row[data-role="Moderators"]').getByRole('button', { name: 'Moderators', exact: true }).click();
  await shot(p, 'settings-roles-dark');
  await p.keyboard.press('Escape');
  await p.getByRole('button', { name: 'Use the light theme' }).click();
});

test('invites: a one-use invite, a revoked one refused in words', async () => {
  const p = ann.page;
  await settings(p, 'Invites');
  await p.getByLabel('Max uses').selectOption({ label: '1 use' });
  await p.getByRole('button', { name: 'Create invite' }).click();
  const link = await p.getByLabel('Invite link').inputValue();
  const revokedCode = link.split('/').pop();
  await p.getByRole('button', { name: `Revoke invite ${revokedCode}` }).click();
  await p.getByRole('button', { name: `Revoke invite ${revokedCode}` }).waitFor({ state: 'detached' });
  await p.getByLabel('Max uses').selectOption({ label: 'no limit' });
  await p.getByRole('button', { name: 'Create invite' }).click();
  await p.waitForFunction((old) => document.querySelector('input[aria-label="Invite link"]')?.value !== old, link);
  invite = await p.getByLabel('Invite link').inputValue();
  await shot(p, 'settings-invites-light');
  await p.keyboard.press('Escape');

  const b = bob.page;
  await b.goto(new URL(link).pathname);
  await b.getByRole('button', { name: 'Accept invite' }).click();
  const refusal = await b.getByRole('alert').textContent();
  assert.match(refusal, /invite/i, 'the refusal names the invite');
  assert.doesNotMatch(refusal, /^[A-Z_]+$/, 'not a bare code');
  await b.goto(new URL(invite).pathname);
  await b.getByRole('button', { name: 'Accept invite' }).click();
  await b.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Night Market' }).waitFor();
  // The staff room is hidden from bob.
  await channelLink(b, 'food').waitFor();
  assert.equal(await channelLink(b, 'staff').count(), 0);
});

test('a report: bob reports, ann takes it and resolves it', async () => {
  const a = ann.page, b = bob.page;
  await closeDialogs(a);
  await channelLink(a, 'food').click();
  await a.getByRole('textbox', { name: 'Message #food' }).fill('fresh dumplings at stall 4');
  await a.keyboard.press('Enter');
  await channelLink(b, 'food').click();
  await b.getByRole('textbox', { name: 'Message #food' }).fill('BUY CHEAP WATCHES http://spam.example');
  await b.keyboard.press('Enter');
  await message(a, 'CHEAP WATCHES').waitFor();
  // Bob reports nothing of his own; he reports ann's message to test the flow from his side.
  await message(b, 'dumplings').hover();
  await message(b, 'dumplings').getByRole('button', { name: 'Report message' }).click();
  await b.getByLabel('What is wrong with it?').fill('price gouging');
  await b.getByRole('button', { name: 'Send report' }).click();
  await b.getByText('The moderators will look at your report.').waitFor();

  await settings(a, 'Reports');
  const report = a.locator('.report').filter({ hasText: 'price gouging' });
  // The moderator sees the reported message itself, not only the reason.
  await report.getByRole('blockquote', { name: 'The reported message' }).getByText('fresh dumplings at stall 4').waitFor();
  await report.getByRole('button', { name: 'Take' }).click();
  await report.getByText('Taken by ann').waitFor();
  await report.getByRole('button', { name: 'Resolve…' }).click();
  await report.getByLabel('Action').selectOption('DISMISSED');
  await report.getByLabel('Reason').fill('fair price');
  await shot(a, 'settings-reports-light');
  await report.getByRole('button', { name: 'Resolve', exact: true }).click();
  await a.getByText('No reports to look at.').waitFor();
  await a.getByRole('radio', { name: 'All' }).check();
  await a.locator('.report').filter({ hasText: 'fair price' }).waitFor();
  await a.keyboard.press('Escape');
});

test('search finds a message and jumps to it', async () => {
  const a = ann.page;
  await closeDialogs(a);
  await channelLink(a, 'crafts').click();
  await a.getByRole('searchbox', { name: 'Search messages' }).fill('dumplings');
  await a.keyboard.press('Enter');
  const results = a.getByRole('region', { name: 'Search results' });
  await results.getByText('fresh dumplings at stall 4').waitFor();
  await shot(a, 'search-light');
  await results.getByRole('button', { name: /fresh dumplings/ }).click();
  await a.getByRole('heading', { name: 'food', exact: true }).waitFor();
  await message(a, 'fresh dumplings').waitFor();
});

test('unread markers, and paging back through history', async () => {
  const a = ann.page, b = bob.page;
  await channelLink(a, 'crafts').click();
  await a.getByRole('textbox', { name: 'Message #crafts' }).waitFor();
  // Bob fills #food with 70 messages while ann is elsewhere.
  const food = await b.evaluate(() => location.pathname.split('/').pop());
  for (let i = 1; i <= 70; i++) {
    for (;;) {
      const r = await api(b, 'mutation($c: ID!, $b: String!) { sendMessage(input: { channelId: $c, body: $b }) { id } }', { c: food, b: `stock update ${i}` });
      // The per-user write limit answers RATE_LIMITED with when to come back: honour it.
      const wait = r.errors?.[0]?.extensions?.retryAfter;
      if (wait !== undefined) await b.waitForTimeout(wait * 1000);
      else {
        assert.ok(!r.errors, JSON.stringify(r.errors));
        break;
      }
    }
  }
  await a.reload();
  await channelLink(a, 'food').and(a.locator('.unread')).waitFor();
  await channelLink(a, 'food').click();
  await message(a, 'stock update 70').waitFor();
  assert.equal(await message(a, 'stock update 1').filter({ hasText: /update 1$/ }).count(), 0, 'the first page is the newest 50');
  // Scrolling to the top loads the older page.
  for (let i = 0; i < 20 && (await message(a, 'fresh dumplings').count()) === 0; i++) {
    await a.getByRole('feed').evaluate((el) => (el.scrollTop = 0));
    await a.waitForTimeout(150);
  }
  await message(a, 'fresh dumplings').waitFor();
  await a.getByText('This is the start of the channel.').waitFor();
});

test('the phone layout: channels in a drawer', async () => {
  const { page, context } = await person(browser, server.url, { viewport: { width: 390, height: 844 }, context: { isMobile: true, hasTouch: true } });
  await page.goto('/');
  await page.getByLabel('Handle').fill('bob');
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Show channels' }).click();
  await page.getByRole('navigation', { name: 'Servers' }).getByRole('link', { name: /Night Market/ }).click();
  await page.getByRole('heading', { name: 'food', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Show channels' }).click();
  await channelLink(page, 'food').waitFor();
  await shot(page, 'phone-drawer-dark');
  await channelLink(page, 'food').click();
  await page.getByRole('textbox', { name: 'Message #food' }).waitFor();
  await shot(page, 'phone-chat-dark');
  await context.close();
});

test('bob leaves, and the guild leaves his rail', async () => {
  const b = bob.page;
  b.once('dialog', (d) => d.accept());
  await b.getByRole('button', { name: 'Leave server' }).click();
  await b.getByText('Create a server with').waitFor();
  await b.getByRole('navigation', { name: 'Servers' }).getByRole('link', { name: /Night Market/ }).waitFor({ state: 'detached' });
  // And it stays gone after a reload: the server agrees.
  await b.reload();
  await b.getByText('Create a server with').waitFor();
  assert.equal(await b.getByRole('navigation', { name: 'Servers' }).getByRole('link', { name: /Night Market/ }).count(), 0);
});

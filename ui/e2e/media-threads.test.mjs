// Files and threads with two people against a real server: ann attaches a PNG (made here),
// its preview loads with the bearer token on both sides and opens in a lightbox; a file the
// server refuses shows its reason on the chip; a text file dropped on the timeline goes as a
// download chip, and a pasted image gets a name; a thread started from the message gets a
// reply in the side panel, and the message shows "1 reply"; bob opens it from the channel's
// thread list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { startServer, startBrowser, person, shot, register } from './harness.mjs';

let server, browser, ann, bob;
const channelName = 'gallery';

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

/** A `width`×`height` PNG of one colour, made byte by byte (IHDR, IDAT, IEND with CRCs). */
function png(width, height, [r, g, b]) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => [r, g, b]).flat())]);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const timeline = (page) => page.getByRole('feed', { name: `Messages in ${channelName}` });
const message = (page, text) => timeline(page).getByRole('article').filter({ hasText: text });
const preview = (scope) => scope.getByRole('button', { name: 'Open image sunset.png' }).locator('img');

/** Waits until the image has decoded (its bytes came through the authenticated fetch). */
async function loaded(img, what) {
  await img.waitFor();
  const deadline = Date.now() + 10_000;
  let w = 0;
  while (Date.now() < deadline) {
    w = await img.evaluate((el) => (el.complete ? el.naturalWidth : 0));
    if (w > 0) return w;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: the preview never loaded (naturalWidth ${w})`);
}

test('ann and bob share a guild channel', async () => {
  await register(ann.page, 'ann');
  await register(bob.page, 'bob');
  const a = ann.page;
  await a.getByRole('button', { name: 'Create a server' }).click();
  await a.getByLabel('Server name').fill('Photo Club');
  await a.getByRole('button', { name: 'Create', exact: true }).click();
  await a.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Photo Club' }).waitFor();
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
  await bob.page.getByRole('link', { name: new RegExp(`^${channelName}, text channel`) }).click();
  await bob.page.getByRole('textbox', { name: `Message #${channelName}` }).waitFor();
});

test('a file the server refuses shows its reason, and can be taken off', async () => {
  const a = ann.page;
  await a.getByLabel('Files to attach').setInputFiles({ name: 'fake.png', mimeType: 'image/png', buffer: Buffer.from('this is not a PNG at all') });
  const chip = a.getByRole('list', { name: 'Files to send' }).getByRole('listitem').filter({ hasText: 'fake.png' });
  await chip.getByRole('alert').waitFor();
  const reason = await chip.getByRole('alert').textContent();
  assert.ok(reason && reason.length > 3, `a reason in words, got ${JSON.stringify(reason)}`);
  await shot(a, 'upload-refused-dark');
  await chip.getByRole('button', { name: 'Remove fake.png' }).click();
  await chip.waitFor({ state: 'detached' });
});

test('ann attaches a PNG and sends it; the preview loads, and the lightbox opens and closes', async () => {
  const a = ann.page;
  await a.getByLabel('Files to attach').setInputFiles({ name: 'sunset.png', mimeType: 'image/png', buffer: png(64, 48, [230, 120, 40]) });
  const chip = a.getByRole('list', { name: 'Files to send' }).getByRole('listitem').filter({ hasText: 'sunset.png' });
  await chip.and(a.locator('[data-state="uploaded"]')).waitFor();
  const box = a.getByRole('textbox', { name: `Message #${channelName}` });
  await box.fill('the sunset from the roof');
  await box.press('Enter');
  await chip.waitFor({ state: 'detached' });
  const m = message(a, 'sunset from the roof');
  assert.equal(await loaded(preview(m), "ann's preview"), 64);
  await shot(a, 'attachment-dark');

  await m.getByRole('button', { name: 'Open image sunset.png' }).click();
  const lightbox = a.getByRole('dialog', { name: 'Image sunset.png' });
  await loaded(lightbox.locator('img'), 'the lightbox');
  await shot(a, 'lightbox-dark');
  await a.keyboard.press('Escape');
  await lightbox.waitFor({ state: 'detached' });
  // A click closes it too.
  await m.getByRole('button', { name: 'Open image sunset.png' }).click();
  await lightbox.locator('img').waitFor();
  await lightbox.click();
  await lightbox.waitFor({ state: 'detached' });
});

test('bob sees the preview live', async () => {
  const m = message(bob.page, 'sunset from the roof');
  assert.equal(await loaded(preview(m), "bob's preview"), 64);
});

test('a file that is not an image goes as a chip, dropped onto the timeline, and downloads', async () => {
  const a = ann.page, b = bob.page;
  // A drop carries a DataTransfer with the file, as a browser makes one from the desktop.
  const drop = await a.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['minutes of the club meeting\n'], 'minutes.txt', { type: 'text/plain' }));
    return dt;
  });
  await timeline(a).dispatchEvent('dragover', { dataTransfer: drop });
  await timeline(a).dispatchEvent('drop', { dataTransfer: drop });
  const chip = a.getByRole('list', { name: 'Files to send' }).getByRole('listitem').filter({ hasText: 'minutes.txt' });
  await chip.and(a.locator('[data-state="uploaded"]')).waitFor();
  // No text needed when a file goes.
  await a.getByRole('textbox', { name: `Message #${channelName}` }).press('Enter');
  await chip.waitFor({ state: 'detached' });
  const file = timeline(b).getByRole('button', { name: 'Download minutes.txt, 28 B' });
  await file.waitFor();
  const [download] = await Promise.all([b.waitForEvent('download'), file.click()]);
  assert.equal(download.suggestedFilename(), 'minutes.txt');
  const { readFileSync } = await import('node:fs');
  assert.equal(readFileSync(await download.path(), 'utf8'), 'minutes of the club meeting\n');
});

test('an image pasted into the composer uploads under a name of its own, and can be taken off', async () => {
  const a = ann.page;
  const bytes = [...png(8, 8, [20, 120, 220])];
  await a.getByRole('textbox', { name: `Message #${channelName}` }).evaluate((el, bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'image.png', { type: 'image/png' }));
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, bytes);
  const chip = a.getByRole('list', { name: 'Files to send' }).getByRole('listitem').filter({ hasText: /^pasted-\d{8}-\d{6}\.png/ });
  await chip.and(a.locator('[data-state="uploaded"]')).waitFor();
  await chip.getByRole('button', { name: /^Remove pasted-/ }).click();
  await chip.waitFor({ state: 'detached' });
});

test('ann starts a thread from the message, replies in the side panel, and the message shows 1 reply', async () => {
  const a = ann.page;
  const m = message(a, 'sunset from the roof');
  await m.hover();
  await m.getByRole('button', { name: 'Start thread' }).click();
  const dialog = a.getByRole('dialog', { name: 'Start a thread' });
  await dialog.getByLabel('Thread name').fill('Roof photos');
  await dialog.getByRole('button', { name: 'Start thread' }).click();
  const panel = a.getByRole('complementary', { name: 'Thread Roof photos' });
  await panel.waitFor();
  await panel.getByText('the sunset from the roof').waitFor();
  await panel.getByRole('button', { name: 'Following', pressed: true }).waitFor();
  const reply = panel.getByRole('textbox', { name: 'Reply in Roof photos' });
  await reply.fill('taken at 19:40');
  await reply.press('Enter');
  await panel.getByRole('feed', { name: 'Replies in Roof photos' }).getByRole('article').filter({ hasText: 'taken at 19:40' }).waitFor();
  await m.getByRole('button', { name: /^Thread Roof photos: 1 reply · last active/ }).waitFor();
  await shot(a, 'thread-panel-dark');
  // Not in the channel itself.
  assert.equal(await message(a, 'taken at 19:40').count(), 0);
  // Unfollow and follow again.
  await panel.getByRole('button', { name: 'Following' }).click();
  await panel.getByRole('button', { name: 'Follow', pressed: false }).waitFor();
  await panel.getByRole('button', { name: 'Follow' }).click();
  await panel.getByRole('button', { name: 'Following', pressed: true }).waitFor();
  await panel.getByRole('button', { name: 'Close thread' }).click();
  await panel.waitFor({ state: 'detached' });
});

test("bob opens the thread from the channel's thread list and answers live", async () => {
  const a = ann.page, b = bob.page;
  await b.getByRole('button', { name: 'Threads' }).click();
  const list = b.getByRole('region', { name: 'Threads' });
  await list.getByRole('button', { name: /Roof photos/ }).click();
  const panel = b.getByRole('complementary', { name: 'Thread Roof photos' });
  await panel.getByText('taken at 19:40').waitFor();
  await panel.getByRole('button', { name: 'Follow', pressed: false }).waitFor();
  const reply = panel.getByRole('textbox', { name: 'Reply in Roof photos' });
  await reply.fill('lovely light');
  await reply.press('Enter');
  await panel.getByText('lovely light').waitFor();
  await shot(b, 'thread-panel-light');
  // Ann opens it from the message and sees both replies; the line says 2.
  const m = message(a, 'sunset from the roof');
  await m.getByRole('button', { name: /^Thread Roof photos/ }).click();
  const annPanel = a.getByRole('complementary', { name: 'Thread Roof photos' });
  await annPanel.getByText('lovely light').waitFor();
  await m.getByRole('button', { name: /^Thread Roof photos: 2 replies/ }).waitFor();
  // After a reload, the server says so too.
  await b.reload();
  await message(b, 'sunset from the roof').getByRole('button', { name: /^Thread Roof photos: 2 replies/ }).waitFor();
  await loaded(preview(message(b, 'sunset from the roof')), "bob's preview after a reload");
});

test('no errors in any page', () => {
  assert.deepEqual(ann.errors.map(String), []);
  assert.deepEqual(bob.errors.map(String), []);
});

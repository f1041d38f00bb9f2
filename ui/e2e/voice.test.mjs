// Voice channels against a real server whose `[voice]` names a LiveKit URL where nothing
// listens (no SFU can run here): joining gets a ticket, connecting fails and the voice panel
// says so in words. The roster is the hub's, and follows LiveKit's webhooks, which this test
// signs and sends as LiveKit would; each page shows it live under the voice channel. The
// owner sees moderators' actions on bob's entry, bob none on hers; with CONNECT denied, bob
// is told why he cannot join.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { startServer, startBrowser, person, shot, register, api } from './harness.mjs';

const VOICE_URL = 'ws://127.0.0.1:9';
const API_KEY = 'devkey';
const API_SECRET = 'e2e-voice-secret-of-at-least-32-characters';

let server, browser, ann, bob;
let guildId, lounge, stage, annId, bobId, ticket;

before(async () => {
  server = await startServer({ config: `[voice]\nurl = "${VOICE_URL}"\napi_key = "${API_KEY}"\napi_secret = "${API_SECRET}"\n` });
  browser = await startBrowser();
  ann = await person(browser, server.url);
  bob = await person(browser, server.url, { colorScheme: 'light' });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const p of [ann, bob]) if (p?.errors.length) console.error('page errors:', p.errors);
});

/** LiveKit's webhook signature: an HS256 JWT by the API key, over the body's SHA-256. */
function signed(body) {
  const now = Math.floor(Date.now() / 1000);
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const sha256 = createHash('sha256').update(body).digest('base64');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ iss: API_KEY, nbf: now - 10, exp: now + 300, sha256 })}`;
  return `${unsigned}.${createHmac('sha256', API_SECRET).update(unsigned).digest('base64url')}`;
}

/** Sends a webhook as LiveKit would: `event` about `identity` in the ticket's room. */
async function webhook(event, identity) {
  const now = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({
    event,
    id: `EV_${randomUUID()}`,
    createdAt: String(now),
    room: { name: ticket.room },
    participant: { sid: `PA_${identity.replace(/\W/g, '')}`, identity, state: event === 'participant_left' ? 'DISCONNECTED' : 'ACTIVE', joinedAt: String(now) },
  });
  const r = await fetch(`${server.url}/_openguild/voice/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/webhook+json', authorization: signed(body) },
    body,
  });
  const text = await r.text();
  assert.ok(r.status === 200 || r.status === 204, `webhook ${event} for ${identity}: ${r.status} ${text}`);
}

const rail = (page) => page.getByRole('navigation', { name: 'Channels' });
const roster = (page, channel) => rail(page).getByRole('list', { name: `In ${channel}` });
const entry = (page, channel, handle) => roster(page, channel).getByRole('button', { name: new RegExp(`^${handle}\\b`) });
const panel = (page) => page.getByRole('region', { name: 'Voice connection' });
const view = (page, channel) => page.getByRole('region', { name: `Voice channel ${channel}` });
const graphql = (page, operation) => page.waitForResponse((r) => r.url().endsWith('/graphql') && new RegExp(`\\b${operation}\\b`).test(r.request().postData() ?? ''));

test('ann makes a server with two voice channels; bob joins it', async () => {
  await register(ann.page, 'ann');
  await register(bob.page, 'bob');
  const a = ann.page;
  await a.getByRole('button', { name: 'Create a server' }).click();
  await a.getByLabel('Server name').fill('Band Practice');
  await a.getByRole('button', { name: 'Create', exact: true }).click();
  await rail(a).getByRole('heading', { name: 'Band Practice' }).waitFor();
  // One voice channel made in the settings, as a person would; the other over GraphQL.
  await a.getByRole('button', { name: 'Server settings' }).click();
  await a.getByRole('tab', { name: 'Channels' }).click();
  await a.getByLabel('Channel name').fill('Lounge');
  await a.getByLabel('Kind').selectOption('VOICE');
  await a.getByRole('button', { name: 'Create channel' }).click();
  await a.getByRole('button', { name: '#Lounge' }).waitFor();
  await a.keyboard.press('Escape');
  const me = await api(a, '{ me { id } guilds { id channels { id } } }');
  annId = me.data.me.id;
  guildId = me.data.guilds[0].id;
  const made = await api(a, 'mutation($g: ID!) { createChannel(input: { guildId: $g, name: "Stage", kind: VOICE }) { id } }', { g: guildId });
  assert.ok(made.data?.createChannel?.id, JSON.stringify(made));
  stage = made.data.createChannel.id;
  const g = await api(a, 'query($g: ID!) { guild(id: $g) { channels { id name kind userLimit } } }', { g: guildId });
  lounge = g.data.guild.channels.find((c) => c.name === 'Lounge');
  assert.equal(lounge?.kind, 'VOICE');
  assert.equal(lounge.userLimit, 0);
  lounge = lounge.id;
  await rail(a).getByRole('link', { name: /^Stage, voice channel/ }).waitFor();

  await a.getByRole('button', { name: 'Invite people' }).click();
  const link = a.getByLabel('Invite link');
  await link.waitFor();
  const invite = await link.inputValue();
  await a.keyboard.press('Escape');
  const b = bob.page;
  await b.goto(new URL(invite).pathname);
  await b.getByRole('button', { name: 'Accept invite' }).click();
  await rail(b).getByRole('link', { name: /^Lounge, voice channel/ }).waitFor();
  bobId = (await api(b, '{ me { id } }')).data.me.id;
});

test('ann joins Lounge: she gets a ticket, and the panel says the voice server cannot be reached', async () => {
  const a = ann.page;
  await a.goto(`/channels/${guildId}/${lounge}`);
  const v = view(a, 'Lounge');
  await v.getByText('Nobody is in this voice channel yet.').waitFor();
  const answer = graphql(a, 'JoinVoice');
  await v.getByRole('button', { name: 'Join voice' }).click();
  const res = await answer;
  const body = await res.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  ticket = body.data.joinVoice;
  assert.match(ticket.token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the token is a JWT');
  const claims = JSON.parse(Buffer.from(ticket.token.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, annId, 'the token is for ann');
  assert.ok(ticket.room.length > 0, 'a room');
  assert.equal(ticket.url, VOICE_URL);
  assert.ok(Date.parse(ticket.expiresAt) > Date.now(), `expires later: ${ticket.expiresAt}`);

  // Nothing listens at the voice URL: the panel says so, in words, and keeps its controls.
  const p = panel(a);
  await p.getByText(/^Can't reach the voice server at 127\.0\.0\.1:9/).waitFor({ timeout: 30_000 });
  await p.getByRole('status').filter({ hasText: 'Not connected to voice' }).waitFor();
  for (const name of ['Mute', 'Deafen', 'Try again', 'Leave voice']) await p.getByRole('button', { name, exact: true }).waitFor();
  // livekit-client came on demand, for this.
  const loaded = await a.evaluate(() => performance.getEntriesByType('resource').some((e) => /livekit-client/.test(e.name)));
  assert.ok(loaded, 'livekit-client was loaded when ann joined');
  await shot(a, 'voice-unreachable');
});

test("LiveKit's webhook puts ann in the roster: bob sees her under Lounge, live", async () => {
  await webhook('participant_joined', annId);
  await entry(bob.page, 'Lounge', 'ann').waitFor();
  await entry(ann.page, 'Lounge', 'ann').waitFor();
  assert.match(await rail(bob.page).getByRole('link', { name: /^Lounge, voice channel/ }).getAttribute('aria-label'), /1 in voice/);
  await shot(bob.page, 'voice-roster-light');
});

test("ann mutes herself: her entry says so, on bob's page too", async () => {
  const a = ann.page;
  const sent = graphql(a, 'SetVoiceState');
  await panel(a).getByRole('button', { name: 'Mute', exact: true }).click();
  const body = await (await sent).json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  await panel(a).getByRole('button', { name: 'Mute', pressed: true }).waitFor();
  await entry(a, 'Lounge', 'ann').and(a.getByRole('button', { name: /, muted/ })).waitFor();
  await entry(bob.page, 'Lounge', 'ann').and(bob.page.getByRole('button', { name: /, muted/ })).waitFor();
});

test('with bob in Lounge too, ann (the owner) has moderators’ actions on him and server-mutes him; bob has none on her', async () => {
  await webhook('participant_joined', bobId);
  const a = ann.page, b = bob.page;
  await entry(a, 'Lounge', 'bob').click();
  const menu = a.getByRole('dialog', { name: '@bob' });
  for (const name of ['Server mute', 'Server deafen', 'Disconnect']) await menu.getByRole('button', { name, exact: true }).waitFor();
  await menu.getByLabel('Move to').selectOption({ label: '🔊 Stage' });
  await menu.getByRole('button', { name: 'Move', exact: true }).waitFor();
  await shot(a, 'voice-moderator-menu');
  // She server-mutes him: both pages show it, and his menu now offers to undo it.
  await menu.getByLabel('Reason (shown in the audit log)').fill('soundcheck');
  const muted = graphql(a, 'ServerMuteMember');
  await menu.getByRole('button', { name: 'Server mute', exact: true }).click();
  const answer = await (await muted).json();
  assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
  await menu.waitFor({ state: 'detached' });
  await entry(a, 'Lounge', 'bob').and(a.getByRole('button', { name: /muted by a moderator/ })).waitFor();
  await entry(b, 'Lounge', 'bob').and(b.getByRole('button', { name: /muted by a moderator/ })).waitFor();
  await entry(a, 'Lounge', 'bob').click();
  await menu.getByRole('button', { name: 'Remove server mute', exact: true }).waitFor();
  await a.keyboard.press('Escape');

  await entry(b, 'Lounge', 'ann').click();
  const hers = b.getByRole('dialog', { name: '@ann' });
  await hers.getByRole('button', { name: 'Profile…' }).waitFor();
  assert.equal(await hers.getByRole('button', { name: /Server mute|Server deafen|Disconnect|^Move$/ }).count(), 0, 'bob has no voice moderation');
  assert.equal(await hers.getByLabel('Move to').count(), 0);
  await b.keyboard.press('Escape');
});

test('with CONNECT denied to him on Lounge, bob is told why he cannot join', async () => {
  const a = ann.page, b = bob.page;
  // Bob has Lounge open (by its address: clicking it in the rail would join it).
  await b.goto(`/channels/${guildId}/${lounge}`);
  const join = view(b, 'Lounge').getByRole('button', { name: 'Join voice' });
  await join.and(b.locator(':enabled')).waitFor();
  const set = await api(a, 'mutation($c: ID!, $u: ID!) { setChannelOverwrite(channelId: $c, userId: $u, allow: [], deny: [CONNECT]) }', { c: lounge, u: bobId });
  assert.equal(set.errors, undefined, JSON.stringify(set.errors));
  // His page hears of it: Join goes off, and says why.
  await view(b, 'Lounge').getByText('You lack the Connect permission in this channel.').waitFor();
  assert.ok(await join.isDisabled(), 'Join is disabled');
  assert.match((await join.getAttribute('aria-describedby')) ?? '', /\S/, 'Join names its reason');
  await shot(b, 'voice-no-connect-light');
  // Clicking the channel in the rail does not ask for a ticket either.
  let asked = false;
  const listen = (r) => /JoinVoice/.test(r.postData() ?? '') && (asked = true);
  b.on('request', listen);
  await rail(b).getByRole('link', { name: /^Lounge, voice channel/ }).click();
  await b.waitForTimeout(300);
  b.off('request', listen);
  assert.equal(asked, false, 'no JoinVoice was sent');
  // The hub refuses him a ticket all the same, saying why.
  const refused = await api(b, 'mutation($c: ID!) { joinVoice(channelId: $c) { token } }', { c: lounge });
  assert.equal(refused.errors?.[0]?.extensions?.code, 'FORBIDDEN', JSON.stringify(refused));
  assert.match(refused.errors[0].message, /CONNECT/);
  // Stage is still open to him.
  await b.goto(`/channels/${guildId}/${stage}`);
  await view(b, 'Stage').getByRole('button', { name: 'Join voice' }).and(b.locator(':enabled')).waitFor();
});

test('ann leaves: the panel goes, and when LiveKit says she left, so does her entry', async () => {
  const a = ann.page;
  const left = graphql(a, 'LeaveVoice');
  await panel(a).getByRole('button', { name: 'Leave voice' }).click();
  const body = await (await left).json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  await panel(a).waitFor({ state: 'detached' });
  await webhook('participant_left', annId);
  await entry(bob.page, 'Lounge', 'ann').waitFor({ state: 'detached' });
  await entry(bob.page, 'Lounge', 'bob').waitFor();
});

test('no errors in any page', () => {
  // The failed connection to the voice server is the one expected error in the console.
  const unexpected = (p) => p.errors.map(String).filter((e) => !/127\.0\.0\.1:9|livekit|signal connection|websocket/i.test(e));
  assert.deepEqual(unexpected(ann), []);
  assert.deepEqual(unexpected(bob), []);
});

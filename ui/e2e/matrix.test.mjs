// Matrix clients and the web client share one hub. Ann uses the web client; bob uses the
// Matrix client-server API from node with his GraphQL session token as access token, in
// the room `!<channel id>:<server name>` of a channel of ann's guild. A message bob sends
// over Matrix shows live in ann's open channel (and in the GraphQL API); a message ann sends
// from the web client's composer wakes bob's Matrix long-poll /sync, as an m.room.message
// from @ann.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startBrowser, person, shot, register, api } from './harness.mjs';

let server, browser, ann;
let bobToken, serverName, guildId, channelId, roomId;
const CHANNEL = 'bridge';

before(async () => {
  server = await startServer();
  browser = await startBrowser();
  ann = await person(browser, server.url);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (ann?.errors.length) console.error('page errors:', ann.errors);
});

/** A GraphQL call from node, with `token` if given. */
async function gql(query, variables = {}, token) {
  const r = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return r.json();
}

/** A Matrix client-server call as bob: the JSON answer, asserting a 200. */
async function matrix(method, path, body, signal) {
  const r = await fetch(`${server.url}/_matrix/client/v3${path}`, {
    method,
    headers: { authorization: `Bearer ${bobToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal,
  });
  const text = await r.text();
  assert.equal(r.status, 200, `${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

const timeline = (page) => page.getByRole('feed');
const message = (page, text) => timeline(page).getByRole('article').filter({ hasText: text });
const composer = (page) => page.getByRole('textbox', { name: `Message #${CHANNEL}` });

test('ann makes a guild with a text channel in the web client and has it open; bob joins by an invite', async () => {
  const a = ann.page;
  await register(a, 'ann');
  await a.getByRole('button', { name: 'Create a server' }).click();
  await a.getByLabel('Server name').fill('Bridge Club');
  await a.getByRole('button', { name: 'Create', exact: true }).click();
  await a.getByRole('navigation', { name: 'Channels' }).getByRole('heading', { name: 'Bridge Club' }).waitFor();
  await a.getByRole('button', { name: 'Server settings' }).click();
  await a.getByRole('tab', { name: 'Channels' }).click();
  await a.getByLabel('Channel name').fill(CHANNEL);
  await a.getByRole('button', { name: 'Create channel' }).click();
  await a.getByRole('button', { name: `#${CHANNEL}` }).waitFor();
  await a.keyboard.press('Escape');
  await a.getByRole('link', { name: new RegExp(`^${CHANNEL}, text channel`) }).click();
  await composer(a).waitFor();

  const mine = await api(a, '{ guilds { id name channels { id name kind } } }');
  const guild = mine.data.guilds.find((g) => g.name === 'Bridge Club');
  guildId = guild.id;
  const channel = guild.channels.find((c) => c.name === CHANNEL);
  assert.equal(channel?.kind, 'TEXT', JSON.stringify(guild.channels));
  channelId = channel.id;

  // Bob registers over GraphQL from node, and joins by an invite of ann's.
  const reg = await gql('mutation { register(handle: "bob", password: "correct horse battery") { token user { id } } }');
  assert.equal(reg.errors, undefined, JSON.stringify(reg.errors));
  bobToken = reg.data.register.token;
  const invite = await api(a, 'mutation($g: ID!) { createInvite(input: { guildId: $g }) { code } }', { g: guildId });
  assert.equal(invite.errors, undefined, JSON.stringify(invite.errors));
  const joined = await gql('mutation($c: String!) { joinGuild(code: $c) { id } }', { c: invite.data.createInvite.code }, bobToken);
  assert.equal(joined.errors, undefined, JSON.stringify(joined.errors));
  assert.equal(joined.data.joinGuild.id, guildId);
});

test("bob's session token is a Matrix access token, and the channel is one of his rooms", async () => {
  const who = await matrix('GET', '/account/whoami');
  const m = /^@bob:(.+)$/.exec(who.user_id);
  assert.ok(m, `whoami: ${JSON.stringify(who)}`);
  serverName = m[1];
  roomId = `!${channelId}:${serverName}`;
  const rooms = await matrix('GET', '/joined_rooms');
  assert.ok(rooms.joined_rooms.includes(roomId), `${roomId} in ${JSON.stringify(rooms.joined_rooms)}`);
});

test("bob sends a message over Matrix: ann's open channel shows it live, and GraphQL has it", async () => {
  const a = ann.page;
  const url = a.url();
  const text = `hello from a Matrix client ${Date.now()}`;
  const sent = await matrix('PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/txn-${Date.now()}`, { msgtype: 'm.text', body: text });
  assert.match(sent.event_id ?? '', /^\$/, `event_id: ${JSON.stringify(sent)}`);

  // Live: no reload, ann's page still on the channel; the message is bob's.
  const shown = message(a, text);
  await shown.waitFor();
  await shown.getByText('bob').first().waitFor();
  assert.equal(a.url(), url, 'the page did not navigate');
  assert.equal(await a.evaluate(() => performance.getEntriesByType('navigation').length), 1, 'the page was not reloaded');
  await shot(a, 'matrix-message-from-bob');

  const q = await api(a, 'query($c: ID!) { channel(id: $c) { messages(last: 10) { edges { node { id body author { handle } } } } } }', { c: channelId });
  assert.equal(q.errors, undefined, JSON.stringify(q.errors));
  const found = q.data.channel.messages.edges.map((e) => e.node).find((n) => n.body === text);
  assert.ok(found, `GraphQL has bob's message: ${JSON.stringify(q.data.channel.messages.edges)}`);
  assert.equal(found.author.handle, 'bob');
  assert.equal(found.id, sent.event_id, "the message's id is its Matrix event id");
});

test("ann sends from the web client's composer: bob's pending Matrix long-poll /sync gets it", async () => {
  const a = ann.page;
  const initial = await matrix('GET', '/sync?timeout=0');
  assert.ok(initial.next_batch, `an initial sync has next_batch: ${JSON.stringify(initial).slice(0, 500)}`);
  assert.ok(initial.rooms?.join?.[roomId], `the initial sync has ${roomId}`);

  const text = `hello from the web client ${Date.now()}`;
  const deadline = Date.now() + 10_000;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), deadline - Date.now());
  let since = initial.next_batch;
  // The long-poll is on its way before ann types.
  let poll = matrix('GET', `/sync?since=${encodeURIComponent(since)}&timeout=30000`, undefined, abort.signal);
  poll.catch(() => {});
  await new Promise((r) => setTimeout(r, 300));

  const box = composer(a);
  await box.fill(text);
  await box.press('Enter');
  await message(a, text).waitFor();

  let event;
  const seen = [];
  try {
    while (!event) {
      const answer = await poll.catch((e) => {
        if (e.name !== 'AbortError') throw e;
        assert.fail(`no m.room.message "${text}" in /sync within 10 s; saw ${JSON.stringify(seen)}`);
      });
      const events = answer.rooms?.join?.[roomId]?.timeline?.events ?? [];
      seen.push(...events);
      event = events.find((e) => e.type === 'm.room.message' && e.content?.body === text);
      since = answer.next_batch;
      if (!event) poll = matrix('GET', `/sync?since=${encodeURIComponent(since)}&timeout=30000`, undefined, abort.signal);
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  assert.equal(event.sender, `@ann:${serverName}`);
  assert.equal(event.content.msgtype, 'm.text');
  assert.match(event.event_id ?? '', /^\$/);
});

test('no errors in the page', () => {
  assert.deepEqual(ann.errors.map(String), []);
});

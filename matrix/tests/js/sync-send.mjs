// matrix-js-sdk against an OpenGuild hub (OPENGUILD_URL): two clients log in, start syncing,
// and a message one sends reaches the other live. Run by server/tests/it/matrix.rs; exits
// non-zero with what went wrong.
import * as sdk from 'matrix-js-sdk';

const URL = process.env.OPENGUILD_URL;
const SERVER = process.env.OPENGUILD_SERVER ?? 'hub.test';

async function graphql(query, variables = {}, token) {
  const r = await fetch(`${URL}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const out = await r.json();
  if (out.errors) throw new Error(`${query}: ${JSON.stringify(out.errors)}`);
  return out.data;
}

function within(ms, what, promise) {
  return Promise.race([promise, new Promise((_, no) => setTimeout(() => no(new Error(`timed out: ${what}`)), ms))]);
}

async function started(handle) {
  const login = await sdk.createClient({ baseUrl: URL }).loginRequest({
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: handle },
    password: 'correct horse',
  });
  const client = sdk.createClient({ baseUrl: URL, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
  const prepared = new Promise((ok, no) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === 'PREPARED') ok();
      if (state === 'ERROR') no(new Error(`sync error: ${data?.error?.message ?? state}`));
    });
  });
  await client.startClient({ initialSyncLimit: 10 });
  await within(20_000, `${handle}'s first sync`, prepared);
  return client;
}

const register = 'mutation($h: String!) { register(handle: $h, password: "correct horse") { token } }';
const ann = (await graphql(register, { h: 'jsann' })).register.token;
const bob = (await graphql(register, { h: 'jsbob' })).register.token;
const guild = (await graphql('mutation { createGuild(input: {name: "JS Club"}) { id } }', {}, ann)).createGuild.id;
const channel = (
  await graphql('mutation($g: ID!) { createChannel(input: {guildId: $g, name: "lobby", kind: TEXT}) { id } }', { g: guild }, ann)
).createChannel.id;
const code = (await graphql('mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }', { g: guild }, ann)).createInvite.code;
await graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', { c: code }, bob);

const roomId = `!${channel}:${SERVER}`;
const a = await started('jsann');
const b = await started('jsbob');
const room = a.getRoom(roomId);
if (!room) throw new Error(`ann's client has no room ${roomId}: ${a.getRooms().map((r) => r.roomId)}`);
if (room.name !== 'lobby') throw new Error(`the room is named ${room.name}, not lobby`);

const heard = new Promise((ok) => {
  a.on(sdk.RoomEvent.Timeline, (event, r) => {
    if (r?.roomId === roomId && event.getType() === 'm.room.message' && event.getContent().body === 'hi from js') ok(event);
  });
});
const sent = await b.sendTextMessage(roomId, 'hi from js');
const event = await within(15_000, 'the message reaching the other client', heard);
if (event.getId() !== sent.event_id) throw new Error(`heard ${event.getId()}, sent ${sent.event_id}`);
if (event.getSender() !== `@jsbob:${SERVER}`) throw new Error(`sender ${event.getSender()}`);
a.stopClient();
b.stopClient();
console.log(`ok: ${sent.event_id} sent by matrix-js-sdk reached the other client`);
process.exit(0);

import { describe, expect, it } from 'vitest';
import { ApiError } from './errors';
import {
  NO_CONNECT,
  VOICE_UNAVAILABLE,
  actionDone,
  channelOf,
  connectFailure,
  disconnectedText,
  hostOf,
  isUnavailable,
  joinBlock,
  joinRefusal,
  micFailure,
  movedOut,
  movedTo,
  occupancy,
  parseLimit,
  participantLabel,
  participantState,
  rostersToRefetch,
  serverMuteArgs,
  sortRoster,
  statusText,
  voiceActions,
  withAnswer,
  withSelf,
  type Roster,
  type VoiceParticipant,
} from './voice';

const NOW = Date.parse('2026-12-02T12:00:00Z');

function p(handle: string, joinedAt: string, over: Partial<VoiceParticipant> = {}): VoiceParticipant {
  return {
    user: { id: `@${handle}:hub.test`, handle },
    muted: false,
    deafened: false,
    serverMuted: false,
    serverDeafened: false,
    camera: false,
    screenShare: false,
    joinedAt,
    ...over,
  };
}

const ann = p('ann', '2026-12-02T11:00:00Z');
const bob = p('bob', '2026-12-02T11:05:00Z');
const cy = p('cy', '2026-12-02T11:05:00Z');

describe('the roster', () => {
  it('is in the order people came, then by handle', () => {
    expect(sortRoster([cy, bob, ann]).map((x) => x.user.handle)).toEqual(['ann', 'bob', 'cy']);
    expect(sortRoster([p('b', 'not a date'), p('a', 'not a date')]).map((x) => x.user.handle)).toEqual(['a', 'b']);
  });

  it('takes an answer unless one to a later question is there already', () => {
    let r: Record<string, Roster> = {};
    r = withAnswer(r, 'v1', [bob, ann], 0);
    expect(r.v1.list.map((x) => x.user.handle)).toEqual(['ann', 'bob']);
    r = withAnswer(r, 'v1', [ann], 7);
    expect(r.v1).toEqual({ at: 7, list: [ann] });
    // The answer asked after event 5 comes back late: it is older than what is shown.
    const stale = withAnswer(r, 'v1', [ann, bob], 5);
    expect(stale).toBe(r);
    // The same event asked again (a reconnect) is taken.
    expect(withAnswer(r, 'v1', [], 7).v1.list).toEqual([]);
    // Other channels are untouched.
    expect(withAnswer(r, 'v2', [cy], 0).v1).toBe(r.v1);
  });

  it("shows my own mute and deafen at once, keeping a moderator's", () => {
    const me = ann.user.id;
    expect(withSelf([ann, bob], me, true, false)[0]).toMatchObject({ muted: true, deafened: false });
    expect(withSelf([ann, bob], me, true, false)[1]).toBe(bob);
    const serverMuted = { ...ann, muted: true, serverMuted: true };
    expect(withSelf([serverMuted], me, false, false)[0].muted).toBe(true);
  });

  it('knows which channel lists someone, and which rosters an event changes', () => {
    const r: Record<string, Roster> = { v1: { at: 1, list: [ann] }, v2: { at: 1, list: [bob] } };
    expect(channelOf(r, bob.user.id)).toBe('v2');
    expect(channelOf(r, cy.user.id)).toBeNull();
    // Bob moved from v2 to v1: both are asked again.
    expect(rostersToRefetch({ channelId: 'v1', target: { id: bob.user.id } }, r).sort()).toEqual(['v1', 'v2']);
    expect(rostersToRefetch({ channelId: 'v3', target: null }, r)).toEqual(['v3']);
    expect(rostersToRefetch({ channelId: 'v3', toChannelId: 'v4', target: null }, r).sort()).toEqual(['v3', 'v4']);
  });

  it('follows me when a moderator moves me', () => {
    const me = ann.user.id;
    const moved = { kind: 'voice.moved', channelId: 'v1', target: { id: me } };
    expect(movedOut(moved, me, 'v1')).toBe(true);
    // Out of a channel this tab is not in (my other device), or someone else: not me here.
    expect(movedOut({ ...moved, channelId: 'v3' }, me, 'v1')).toBe(false);
    expect(movedOut({ ...moved, target: { id: bob.user.id } }, me, 'v1')).toBe(false);
    expect(movedOut({ ...moved, kind: 'voice.left' }, me, 'v1')).toBe(false);
    expect(movedOut(moved, me, null)).toBe(false);
    // The event names the channel I left: the roster that lists me says where I went, once it does.
    const r: Record<string, Roster> = { v1: { at: 1, list: [] }, v2: { at: 2, list: [ann] } };
    expect(movedTo(moved, me, 'v1', r)).toBe('v2');
    expect(movedTo(moved, me, 'v1', { v1: { at: 1, list: [] }, v2: { at: 2, list: [] } })).toBeNull();
    expect(movedTo({ ...moved, channelId: 'v3' }, me, 'v1', r)).toBeNull();
  });

  it('reads an entry out in words', () => {
    expect(participantLabel(ann, false)).toBe('ann');
    expect(participantLabel({ ...ann, muted: true, deafened: true }, true)).toBe('ann, speaking, muted, deafened');
    expect(participantLabel({ ...ann, muted: true, serverMuted: true, camera: true, screenShare: true }, false)).toBe(
      'ann, muted by a moderator, camera on, sharing their screen',
    );
    expect(participantLabel({ ...ann, deafened: true, serverDeafened: true }, false)).toBe('ann, deafened by a moderator');
    expect(participantState(ann, false)).toEqual([]);
    expect(participantState({ ...ann, muted: true }, true)).toEqual(['speaking', 'muted']);
  });

  it('shows occupancy only with a user limit', () => {
    expect(occupancy(2, 0)).toBe('');
    expect(occupancy(2, 5)).toBe('2/5');
  });
});

describe("moderators' actions", () => {
  const target = { serverMuted: false, serverDeafened: false };
  const base = { isSelf: false, target, otherVoiceChannels: 1 };

  it('shows none without the permissions, and none on oneself', () => {
    expect(voiceActions({ ...base, myPerms: ['VIEW_CHANNEL', 'CONNECT', 'SPEAK'] })).toEqual([]);
    expect(voiceActions({ ...base, myPerms: ['ADMINISTRATOR'], isSelf: true })).toEqual([]);
  });

  it('shows each action for its permission', () => {
    expect(voiceActions({ ...base, myPerms: ['MUTE_MEMBERS'] })).toEqual(['server_mute']);
    expect(voiceActions({ ...base, myPerms: ['DEAFEN_MEMBERS'] })).toEqual(['server_deafen']);
    expect(voiceActions({ ...base, myPerms: ['MUTE_MEMBERS', 'DEAFEN_MEMBERS'] })).toEqual(['server_mute', 'server_deafen']);
    expect(voiceActions({ ...base, myPerms: ['MOVE_MEMBERS'] })).toEqual(['disconnect', 'move']);
    expect(voiceActions({ ...base, myPerms: ['MOVE_MEMBERS'], otherVoiceChannels: 0 })).toEqual(['disconnect']);
    expect(voiceActions({ ...base, myPerms: ['ADMINISTRATOR'] })).toEqual(['server_mute', 'server_deafen', 'disconnect', 'move']);
  });

  it('offers to undo what a moderator did', () => {
    const done = { serverMuted: true, serverDeafened: true };
    expect(voiceActions({ ...base, target: done, myPerms: ['MUTE_MEMBERS', 'DEAFEN_MEMBERS'] })).toEqual(['server_unmute', 'server_undeafen']);
  });

  it('changes one of mute and deafen, keeping the other', () => {
    const t = { serverMuted: false, serverDeafened: true };
    expect(serverMuteArgs('server_mute', t)).toEqual({ muted: true, deafened: true });
    expect(serverMuteArgs('server_unmute', t)).toEqual({ muted: false, deafened: true });
    expect(serverMuteArgs('server_deafen', { serverMuted: true, serverDeafened: false })).toEqual({ muted: true, deafened: true });
    expect(serverMuteArgs('server_undeafen', t)).toEqual({ muted: false, deafened: false });
  });

  it('says what each did', () => {
    expect(actionDone('server_mute', 'bob')).toBe('bob is muted for everyone.');
    expect(actionDone('move', 'bob', 'Lounge')).toBe('bob was moved to Lounge.');
    expect(actionDone('disconnect', 'bob')).toBe('bob was disconnected from voice.');
  });
});

describe('who may join, and why not', () => {
  const channel = { archived: false, myPermissions: ['VIEW_CHANNEL', 'CONNECT', 'SPEAK'], userLimit: 0 };
  const base = { channel, count: 0, inIt: false, now: NOW, timeZone: 'UTC' };

  it('lets a member with Connect join', () => {
    expect(joinBlock(base)).toBeNull();
    expect(joinBlock({ ...base, channel: { ...channel, myPermissions: ['ADMINISTRATOR'] } })).toBeNull();
  });

  it('says so without the Connect permission', () => {
    expect(joinBlock({ ...base, channel: { ...channel, myPermissions: ['VIEW_CHANNEL'] } })).toBe(NO_CONNECT);
    expect(NO_CONNECT).toBe('You lack the Connect permission in this channel.');
  });

  it('says when a channel is full, unless one is in it or may move members', () => {
    const full = { ...base, channel: { ...channel, userLimit: 2 }, count: 2 };
    expect(joinBlock(full)).toBe('This voice channel is full: 2 of 2 places are taken.');
    expect(joinBlock({ ...full, inIt: true })).toBeNull();
    expect(joinBlock({ ...full, channel: { ...full.channel, myPermissions: [...channel.myPermissions, 'MOVE_MEMBERS'] } })).toBeNull();
    expect(joinBlock({ ...full, count: 1 })).toBeNull();
  });

  it('says when the viewer is timed out, until when', () => {
    expect(joinBlock({ ...base, timedOutUntil: '2026-12-02T12:30:00Z' })).toBe('You are timed out until 12:30: you cannot join voice until then.');
    expect(joinBlock({ ...base, timedOutUntil: '2026-12-02T11:30:00Z' })).toBeNull();
  });

  it('says when the channel is archived or the hub has no voice', () => {
    expect(joinBlock({ ...base, channel: { ...channel, archived: true } })).toBe('This channel is archived: nobody can join it.');
    expect(joinBlock({ ...base, unavailable: true })).toBe(VOICE_UNAVAILABLE);
  });

  it("shows the server's refusal in words", () => {
    const forbidden = new ApiError('FORBIDDEN', '@bob:hub.test lacks the CONNECT permission in this channel');
    expect(joinRefusal(forbidden)).toBe('@bob:hub.test lacks the CONNECT permission in this channel.');
    expect(joinRefusal(new ApiError('CONFLICT', 'the voice channel is full'))).toBe('The voice channel is full.');
    const unavailable = new ApiError('VOICE_UNAVAILABLE', 'voice is not set up on this hub: its operator sets [voice] url, api_key and api_secret');
    expect(joinRefusal(unavailable)).toBe(VOICE_UNAVAILABLE);
    expect(isUnavailable(unavailable)).toBe(true);
    expect(isUnavailable(forbidden)).toBe(false);
    // A call the voice server failed: the server's words, and Join stays on.
    const failed = new ApiError('UNAVAILABLE', "the hub's voice server did not do it: connection refused; try again shortly");
    expect(isUnavailable(failed)).toBe(false);
    expect(joinRefusal(failed)).toBe("The hub's voice server did not do it: connection refused; try again shortly.");
    expect(joinRefusal(new TypeError('Failed to fetch'))).toMatch(/Can't reach the server/);
  });
});

describe('the connection, in words', () => {
  const url = 'ws://127.0.0.1:9';

  it('names the voice server it cannot reach', () => {
    expect(hostOf(url)).toBe('127.0.0.1:9');
    expect(hostOf('not a url')).toBe('not a url');
    const unreachable = { name: 'ConnectionError', reason: 1, message: 'could not establish signal connection' };
    expect(connectFailure(unreachable, url)).toBe(
      "Can't reach the voice server at 127.0.0.1:9: you are not connected, so nobody hears you and you hear nobody. Try again, or tell the hub's operator if it goes on.",
    );
    expect(connectFailure(new Error('boom'), url)).toMatch(/^Can't reach the voice server/);
    expect(connectFailure(undefined, url)).toMatch(/^Can't reach the voice server/);
  });

  it('tells a refusal from an unreachable server, and is quiet when the person left', () => {
    expect(connectFailure({ name: 'ConnectionError', reason: 0, status: 401 }, url)).toBe(
      "The voice server at 127.0.0.1:9 turned the connection down (401). Try again; if it keeps happening, tell the hub's operator.",
    );
    expect(connectFailure({ name: 'ConnectionError', reason: 3 }, url)).toBeNull();
    expect(connectFailure({ name: 'ConnectionError', reason: 4 }, url)).toMatch(/ended the connection/);
  });

  it('explains a microphone that cannot be opened', () => {
    expect(micFailure({ name: 'NotAllowedError' })).toMatch(/did not allow the microphone: you can listen/);
    expect(micFailure({ name: 'NotFoundError' })).toBe('No microphone was found: you can listen, but nobody hears you.');
    expect(micFailure(null)).toMatch(/could not be opened/);
  });

  it('explains why a connection ended', () => {
    expect(disconnectedText(1)).toBeNull();
    expect(disconnectedText(2)).toMatch(/somewhere else/);
    expect(disconnectedText(4)).toBe('You were removed from the voice channel.');
    expect(disconnectedText(undefined)).toBe('The connection to the voice server was lost.');
  });

  it('says where the panel is', () => {
    expect(statusText('connected')).toBe('Voice connected');
    expect(statusText('failed')).toBe('Not connected to voice');
  });

  it('reads a user limit', () => {
    expect(parseLimit(' 5 ')).toBe(5);
    expect(parseLimit('0')).toBe(0);
    expect(parseLimit('99')).toBe(99);
    expect(parseLimit('100')).toBeNull();
    expect(parseLimit('-1')).toBeNull();
    expect(parseLimit('two')).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import {
  ALL_PERMISSIONS,
  PERMISSION_INFO,
  TIMEOUT_PRESETS,
  can,
  composerState,
  memberActions,
  messageActions,
  settingsTabs,
  type ComposerInput,
} from './permissions';
import { formatTime } from './time';

const NOW = Date.parse('2026-12-02T12:00:00Z');

function input(over: Partial<ComposerInput['channel']> = {}, rest: Partial<Omit<ComposerInput, 'channel'>> = {}): ComposerInput {
  return {
    channel: {
      kind: 'TEXT',
      locked: false,
      archived: false,
      slowModeSeconds: 0,
      myPermissions: ['VIEW_CHANNEL', 'SEND_MESSAGES'],
      ...over,
    },
    now: NOW,
    ...rest,
  };
}

describe('permission tables', () => {
  it('lists each of the schema permissions once', () => {
    expect(ALL_PERMISSIONS).toHaveLength(24);
    expect(new Set(ALL_PERMISSIONS).size).toBe(24);
    expect(ALL_PERMISSIONS).toContain('MODERATE_MEMBERS');
  });

  it('has a label and a description sentence for every permission', () => {
    expect(Object.keys(PERMISSION_INFO).sort()).toEqual([...ALL_PERMISSIONS].sort());
    for (const p of ALL_PERMISSIONS) {
      const info = PERMISSION_INFO[p];
      expect(info.label.length).toBeGreaterThan(2);
      expect(info.label).not.toMatch(/_/);
      expect(info.description).toMatch(/^[A-Z].*\.$/);
    }
  });

  it('has six timeout presets in increasing order', () => {
    expect(TIMEOUT_PRESETS.map((p) => p.seconds)).toEqual([60, 300, 600, 3600, 86400, 604800]);
    for (const p of TIMEOUT_PRESETS) expect(p.label).toBeTruthy();
  });
});

describe('can', () => {
  it('checks membership', () => {
    expect(can(['SEND_MESSAGES'], 'SEND_MESSAGES')).toBe(true);
    expect(can(['SEND_MESSAGES'], 'BAN_MEMBERS')).toBe(false);
    expect(can([], 'SEND_MESSAGES')).toBe(false);
  });

  it('lets ADMINISTRATOR imply everything', () => {
    for (const p of ALL_PERMISSIONS) expect(can(['ADMINISTRATOR'], p)).toBe(true);
  });
});

describe('composerState', () => {
  it('is ok for a normal text channel', () => {
    expect(composerState(input())).toEqual({ kind: 'ok' });
  });

  it('blocks voice channels first', () => {
    expect(composerState(input({ kind: 'VOICE', archived: true, locked: true, myPermissions: [] }))).toEqual({
      kind: 'blocked',
      reason: 'voice',
      text: 'Voice channels have no text chat.',
    });
  });

  it('blocks archived channels, even for administrators', () => {
    expect(composerState(input({ archived: true, myPermissions: ['ADMINISTRATOR'] }))).toEqual({
      kind: 'blocked',
      reason: 'archived',
      text: 'This channel is archived: it is read-only for good.',
    });
  });

  it('blocks a timed-out member, naming the time', () => {
    const until = new Date(NOW + 9 * 60_000).toISOString();
    const s = composerState(input({ locked: true }, { timedOutUntil: until, timeZone: 'UTC' }));
    expect(s).toEqual({
      kind: 'blocked',
      reason: 'timed_out',
      text: 'You are timed out until 12:09. You can read, but not send messages.',
    });
  });

  it('uses the local time zone by default for the timeout', () => {
    const until = new Date(NOW + 60 * 60_000).toISOString();
    const s = composerState(input({}, { timedOutUntil: until }));
    expect(s.kind === 'blocked' && s.text).toBe(
      `You are timed out until ${formatTime(until, {})}. You can read, but not send messages.`,
    );
  });

  it('names the date for a timeout longer than a day', () => {
    const until = new Date(NOW + 3 * 86_400_000).toISOString();
    const s = composerState(input({}, { timedOutUntil: until, timeZone: 'UTC' }));
    expect(s.kind === 'blocked' && s.text).toMatch(/^You are timed out until Saturday,? 5 December 2026 at 12:00\./);
  });

  it('ignores a timeout that has ended', () => {
    const until = new Date(NOW - 1000).toISOString();
    expect(composerState(input({}, { timedOutUntil: until }))).toEqual({ kind: 'ok' });
    expect(composerState(input({}, { timedOutUntil: null }))).toEqual({ kind: 'ok' });
    expect(composerState(input({}, { timedOutUntil: 'garbage' }))).toEqual({ kind: 'ok' });
  });

  it('blocks a locked channel for members', () => {
    expect(composerState(input({ locked: true }))).toEqual({
      kind: 'blocked',
      reason: 'locked',
      text: 'This channel is locked. Only moderators can send messages.',
    });
  });

  it('lets moderators and administrators post in a locked channel', () => {
    expect(composerState(input({ locked: true, myPermissions: ['SEND_MESSAGES', 'MANAGE_CHANNELS'] }))).toEqual({
      kind: 'ok',
    });
    expect(composerState(input({ locked: true, myPermissions: ['ADMINISTRATOR'] }))).toEqual({ kind: 'ok' });
  });

  it('blocks without SEND_MESSAGES', () => {
    expect(composerState(input({ myPermissions: ['VIEW_CHANNEL'] }))).toEqual({
      kind: 'blocked',
      reason: 'no_permission',
      text: 'You do not have permission to send messages in this channel.',
    });
  });

  it('reports slow mode with the seconds left, rounded up', () => {
    expect(composerState(input({ slowModeSeconds: 30 }, { lastSentAt: NOW - 10_500 }))).toEqual({
      kind: 'slow',
      secondsLeft: 20,
      text: 'Slow mode: you can send again in 20s.',
    });
    expect(composerState(input({ slowModeSeconds: 30 }, { lastSentAt: NOW - 29_999 }))).toEqual({
      kind: 'slow',
      secondsLeft: 1,
      text: 'Slow mode: you can send again in 1s.',
    });
  });

  it('is ok once the slow-mode interval has passed or nothing was sent', () => {
    expect(composerState(input({ slowModeSeconds: 30 }, { lastSentAt: NOW - 30_000 }))).toEqual({ kind: 'ok' });
    expect(composerState(input({ slowModeSeconds: 30 }, { lastSentAt: null }))).toEqual({ kind: 'ok' });
    expect(composerState(input({ slowModeSeconds: 0 }, { lastSentAt: NOW }))).toEqual({ kind: 'ok' });
  });

  it('lets MANAGE_MESSAGES and MANAGE_CHANNELS bypass slow mode', () => {
    for (const extra of ['MANAGE_MESSAGES', 'MANAGE_CHANNELS', 'ADMINISTRATOR']) {
      const s = composerState(
        input({ slowModeSeconds: 60, myPermissions: ['SEND_MESSAGES', extra] }, { lastSentAt: NOW - 1000 }),
      );
      expect(s).toEqual({ kind: 'ok' });
    }
  });

  it('checks the timeout before the lock and the lock before permissions', () => {
    const until = new Date(NOW + 60_000).toISOString();
    expect(composerState(input({ locked: true, myPermissions: [] }, { timedOutUntil: until })).kind).toBe('blocked');
    const s1 = composerState(input({ locked: true, myPermissions: [] }, { timedOutUntil: until }));
    expect(s1.kind === 'blocked' && s1.reason).toBe('timed_out');
    const s2 = composerState(input({ locked: true, myPermissions: [] }));
    expect(s2.kind === 'blocked' && s2.reason).toBe('locked');
  });
});

describe('settingsTabs', () => {
  it('shows nothing to a plain member', () => {
    expect(settingsTabs(['VIEW_CHANNEL', 'SEND_MESSAGES'])).toEqual([]);
  });

  it('shows every tab, in order, to an administrator', () => {
    expect(settingsTabs(['ADMINISTRATOR'])).toEqual(['overview', 'channels', 'roles', 'invites', 'bans', 'reports', 'audit']);
  });

  it('maps each permission to its tab', () => {
    expect(settingsTabs(['MANAGE_GUILD'])).toEqual(['overview', 'channels', 'invites']);
    expect(settingsTabs(['MANAGE_CHANNELS'])).toEqual(['channels']);
    expect(settingsTabs(['MANAGE_ROLES'])).toEqual(['roles']);
    expect(settingsTabs(['CREATE_INVITE'])).toEqual(['invites']);
    expect(settingsTabs(['BAN_MEMBERS'])).toEqual(['bans']);
    expect(settingsTabs(['MODERATE_MEMBERS'])).toEqual(['reports']);
    expect(settingsTabs(['VIEW_AUDIT_LOG'])).toEqual(['audit']);
  });

  it('keeps display order whatever the permission order', () => {
    expect(settingsTabs(['VIEW_AUDIT_LOG', 'BAN_MEMBERS', 'MANAGE_CHANNELS'])).toEqual(['channels', 'bans', 'audit']);
  });
});

describe('memberActions', () => {
  const all = ['KICK_MEMBERS', 'BAN_MEMBERS', 'MODERATE_MEMBERS', 'MANAGE_ROLES'];

  it('offers everything to a full moderator', () => {
    expect(memberActions({ myPerms: all, isSelf: false, targetIsOwner: false, targetTimedOut: false })).toEqual([
      'kick',
      'ban',
      'timeout',
      'roles',
    ]);
  });

  it('offers remove_timeout instead of timeout for a timed-out member', () => {
    expect(
      memberActions({ myPerms: ['MODERATE_MEMBERS'], isSelf: false, targetIsOwner: false, targetTimedOut: true }),
    ).toEqual(['remove_timeout']);
  });

  it('offers nothing on yourself or on the owner', () => {
    expect(memberActions({ myPerms: ['ADMINISTRATOR'], isSelf: true, targetIsOwner: false, targetTimedOut: false })).toEqual([]);
    expect(memberActions({ myPerms: ['ADMINISTRATOR'], isSelf: false, targetIsOwner: true, targetTimedOut: false })).toEqual([]);
  });

  it('offers nothing without moderation permissions', () => {
    expect(memberActions({ myPerms: ['SEND_MESSAGES'], isSelf: false, targetIsOwner: false, targetTimedOut: false })).toEqual([]);
  });

  it('offers each action for its own permission', () => {
    const one = (p: string) => memberActions({ myPerms: [p], isSelf: false, targetIsOwner: false, targetTimedOut: false });
    expect(one('KICK_MEMBERS')).toEqual(['kick']);
    expect(one('BAN_MEMBERS')).toEqual(['ban']);
    expect(one('MANAGE_ROLES')).toEqual(['roles']);
  });
});

describe('messageActions', () => {
  it('lets an author reply, react, edit and delete, but not report', () => {
    expect(messageActions({ myPerms: ['SEND_MESSAGES', 'ADD_REACTIONS'], isAuthor: true, deleted: false })).toEqual([
      'reply',
      'react',
      'edit',
      'delete',
    ]);
  });

  it('lets others reply, react and report', () => {
    expect(messageActions({ myPerms: ['SEND_MESSAGES', 'ADD_REACTIONS'], isAuthor: false, deleted: false })).toEqual([
      'reply',
      'react',
      'report',
    ]);
  });

  it('lets MANAGE_MESSAGES pin and delete others’ messages but not edit them', () => {
    expect(messageActions({ myPerms: ['MANAGE_MESSAGES'], isAuthor: false, deleted: false })).toEqual(['pin', 'delete', 'report']);
  });

  it('lets anyone in a direct message pin, without MANAGE_MESSAGES', () => {
    const dm = ['VIEW_CHANNEL', 'SEND_MESSAGES', 'READ_MESSAGE_HISTORY', 'ADD_REACTIONS'];
    expect(messageActions({ myPerms: dm, isAuthor: false, deleted: false, inDm: true })).toEqual(['reply', 'react', 'pin', 'report']);
    expect(messageActions({ myPerms: dm, isAuthor: false, deleted: false })).not.toContain('pin');
  });

  it('offers nothing on a deleted message', () => {
    expect(messageActions({ myPerms: ['ADMINISTRATOR'], isAuthor: true, deleted: true })).toEqual([]);
  });

  it('needs SEND_MESSAGES to reply and ADD_REACTIONS to react', () => {
    expect(messageActions({ myPerms: [], isAuthor: false, deleted: false })).toEqual(['report']);
    expect(messageActions({ myPerms: [], isAuthor: true, deleted: false })).toEqual(['edit', 'delete']);
  });
});

describe('threads', () => {
  const perms = ['SEND_MESSAGES', 'ADD_REACTIONS', 'CREATE_PUBLIC_THREADS', 'SEND_MESSAGES_IN_THREADS'];
  it('offers to start a thread with CREATE_PUBLIC_THREADS, under a message without one, outside DMs and threads', () => {
    expect(messageActions({ myPerms: perms, isAuthor: false, deleted: false })).toEqual(['reply', 'react', 'thread', 'report']);
    expect(messageActions({ myPerms: perms, isAuthor: false, deleted: false, hasThread: true })).not.toContain('thread');
    expect(messageActions({ myPerms: perms, isAuthor: false, deleted: false, inDm: true })).not.toContain('thread');
    expect(messageActions({ myPerms: perms, isAuthor: false, deleted: false, inThread: true })).not.toContain('thread');
    expect(messageActions({ myPerms: ['SEND_MESSAGES'], isAuthor: false, deleted: false })).not.toContain('thread');
  });
  it('replies in a thread with SEND_MESSAGES_IN_THREADS, not SEND_MESSAGES', () => {
    expect(messageActions({ myPerms: ['SEND_MESSAGES_IN_THREADS'], isAuthor: false, deleted: false, inThread: true })).toContain('reply');
    expect(messageActions({ myPerms: ['SEND_MESSAGES'], isAuthor: false, deleted: false, inThread: true })).not.toContain('reply');
  });
  const thread = (over: Partial<ComposerInput['channel']>) => ({ kind: 'THREAD', locked: false, archived: false, slowModeSeconds: 0, myPermissions: ['SEND_MESSAGES_IN_THREADS'], ...over });
  it('lets the composer send in a thread with SEND_MESSAGES_IN_THREADS only', () => {
    expect(composerState({ channel: thread({}), now: 0 })).toEqual({ kind: 'ok' });
    expect(composerState({ channel: thread({ myPermissions: ['SEND_MESSAGES'] }), now: 0 })).toMatchObject({ kind: 'blocked', reason: 'no_permission' });
  });
  it('keeps a quiet ("archived") thread open: the next post wakes it', () => {
    expect(composerState({ channel: thread({ archived: true }), now: 0 })).toEqual({ kind: 'ok' });
  });
});

// What the viewer may do, derived from their effective permissions (GraphQL enum strings with
// Discord's names). The server enforces all of this; the client uses it to show only the
// controls that will work and to explain why the composer is disabled.

import type { Permission } from './generated';
import { formatFull, formatTime } from './time';

export const ALL_PERMISSIONS: readonly Permission[] = [
  'CREATE_INVITE',
  'KICK_MEMBERS',
  'BAN_MEMBERS',
  'ADMINISTRATOR',
  'MANAGE_CHANNELS',
  'MANAGE_GUILD',
  'ADD_REACTIONS',
  'VIEW_AUDIT_LOG',
  'STREAM',
  'VIEW_CHANNEL',
  'SEND_MESSAGES',
  'MANAGE_MESSAGES',
  'ATTACH_FILES',
  'READ_MESSAGE_HISTORY',
  'MENTION_EVERYONE',
  'CONNECT',
  'SPEAK',
  'MUTE_MEMBERS',
  'DEAFEN_MEMBERS',
  'MOVE_MEMBERS',
  'MANAGE_ROLES',
  'CREATE_PUBLIC_THREADS',
  'SEND_MESSAGES_IN_THREADS',
  'MODERATE_MEMBERS',
];

/** Human labels and descriptions for the role editor: one for each of the schema's permissions. */
export const PERMISSION_INFO: Record<Permission, { label: string; description: string }> = {
  CREATE_INVITE: {
    label: 'Create invites',
    description: 'Members can create invite links to bring new people to the server.',
  },
  KICK_MEMBERS: {
    label: 'Kick members',
    description: 'Members can remove other members from the server. Kicked members can rejoin with an invite.',
  },
  BAN_MEMBERS: {
    label: 'Ban members',
    description: 'Members can permanently remove other members and stop them from rejoining.',
  },
  ADMINISTRATOR: {
    label: 'Administrator',
    description: 'Members have every permission and bypass channel restrictions. Grant this with care.',
  },
  MANAGE_CHANNELS: {
    label: 'Manage channels',
    description: 'Members can create, edit, lock and delete channels, and post in locked channels.',
  },
  MANAGE_GUILD: {
    label: 'Manage server',
    description: "Members can change the server's name, description and other settings.",
  },
  ADD_REACTIONS: {
    label: 'Add reactions',
    description: 'Members can add new emoji reactions to messages.',
  },
  VIEW_AUDIT_LOG: {
    label: 'View audit log',
    description: 'Members can see the record of moderation and settings changes.',
  },
  VIEW_CHANNEL: {
    label: 'View channels',
    description: 'Members can see channels and read their messages.',
  },
  SEND_MESSAGES: {
    label: 'Send messages',
    description: 'Members can send messages in text channels.',
  },
  MANAGE_MESSAGES: {
    label: 'Manage messages',
    description: "Members can delete other members' messages and are not limited by slow mode.",
  },
  ATTACH_FILES: {
    label: 'Attach files',
    description: 'Members can upload files and images.',
  },
  READ_MESSAGE_HISTORY: {
    label: 'Read message history',
    description: 'Members can read messages sent before they opened the channel.',
  },
  MENTION_EVERYONE: {
    label: 'Mention @everyone',
    description: 'Members can notify everyone in the server or channel at once.',
  },
  CONNECT: {
    label: 'Connect',
    description: 'Members can join voice channels.',
  },
  SPEAK: {
    label: 'Speak',
    description: 'Members can talk in voice channels.',
  },
  MUTE_MEMBERS: {
    label: 'Mute members',
    description: 'Members can mute other members in voice channels.',
  },
  MOVE_MEMBERS: {
    label: 'Move members',
    description: 'Members can move other members between voice channels, and disconnect them from voice.',
  },
  DEAFEN_MEMBERS: {
    label: 'Deafen members',
    description: 'Members can stop other members from hearing anyone in voice channels (with Mute members).',
  },
  STREAM: {
    label: 'Video',
    description: 'Members can share their camera or their screen in voice channels.',
  },
  MANAGE_ROLES: {
    label: 'Manage roles',
    description: 'Members can create and edit roles below their own and assign them to members.',
  },
  CREATE_PUBLIC_THREADS: {
    label: 'Create threads',
    description: 'Members can start a thread under a message of a channel they can see.',
  },
  SEND_MESSAGES_IN_THREADS: {
    label: 'Send messages in threads',
    description: 'Members can talk in threads; the rest of a thread\'s permissions are its channel\'s.',
  },
  MODERATE_MEMBERS: {
    label: 'Time out members',
    description: 'Members can time out other members and handle reports.',
  },
};

/** Whether `perms` grant `p`. ADMINISTRATOR implies every permission. */
export function can(perms: readonly string[], p: string): boolean {
  return perms.includes(p) || perms.includes('ADMINISTRATOR');
}

export type ComposerState =
  | { kind: 'ok' }
  | { kind: 'slow'; secondsLeft: number; text: string }
  | {
      kind: 'blocked';
      reason: 'archived' | 'locked' | 'timed_out' | 'no_permission' | 'voice';
      text: string;
    };

export interface ComposerInput {
  channel: { kind: string; locked: boolean; archived: boolean; slowModeSeconds: number; myPermissions: string[] };
  /** ISO time the viewer's timeout ends, if they are timed out. */
  timedOutUntil?: string | null;
  /** When the viewer last sent a message in this channel (ms since the epoch). */
  lastSentAt?: number | null;
  /** Current time, ms since the epoch. */
  now: number;
  /** For the "timed out until" time; default the runtime's zone and 'en-GB'. */
  timeZone?: string;
  locale?: string;
}

const DAY_MS = 86_400_000;

/** Whether the viewer can send in a channel, and if not, a sentence saying why. */
export function composerState(input: ComposerInput): ComposerState {
  const { channel, now } = input;
  const perms = channel.myPermissions ?? [];
  if (channel.kind === 'VOICE') {
    return { kind: 'blocked', reason: 'voice', text: 'Voice channels have no text chat.' };
  }
  const thread = channel.kind === 'THREAD';
  // A thread quiet for three days shows as archived until its next post: it stays open.
  if (channel.archived && !thread) {
    return { kind: 'blocked', reason: 'archived', text: 'This channel is archived: it is read-only for good.' };
  }
  if (input.timedOutUntil) {
    const until = Date.parse(input.timedOutUntil);
    if (Number.isFinite(until) && until > now) {
      const fmt = { timeZone: input.timeZone, locale: input.locale };
      const when =
        until - now < DAY_MS ? formatTime(input.timedOutUntil, fmt) : formatFull(input.timedOutUntil, fmt);
      return {
        kind: 'blocked',
        reason: 'timed_out',
        text: `You are timed out until ${when}. You can read, but not send messages.`,
      };
    }
  }
  if (channel.locked && !can(perms, 'MANAGE_CHANNELS')) {
    return {
      kind: 'blocked',
      reason: 'locked',
      text: 'This channel is locked. Only moderators can send messages.',
    };
  }
  if (!can(perms, thread ? 'SEND_MESSAGES_IN_THREADS' : 'SEND_MESSAGES')) {
    return {
      kind: 'blocked',
      reason: 'no_permission',
      text: 'You do not have permission to send messages in this channel.',
    };
  }
  const slowMs = Math.max(0, channel.slowModeSeconds || 0) * 1000;
  if (
    slowMs > 0 &&
    input.lastSentAt !== null &&
    input.lastSentAt !== undefined &&
    now < input.lastSentAt + slowMs &&
    !can(perms, 'MANAGE_MESSAGES') &&
    !can(perms, 'MANAGE_CHANNELS')
  ) {
    const secondsLeft = Math.max(1, Math.ceil((input.lastSentAt + slowMs - now) / 1000));
    return { kind: 'slow', secondsLeft, text: `Slow mode: you can send again in ${secondsLeft}s.` };
  }
  return { kind: 'ok' };
}

export type SettingsTab = 'overview' | 'channels' | 'roles' | 'invites' | 'bans' | 'reports' | 'audit';

/** The server-settings tabs the viewer may open, in display order. */
export function settingsTabs(perms: string[]): SettingsTab[] {
  const tabs: SettingsTab[] = [];
  if (can(perms, 'MANAGE_GUILD')) tabs.push('overview');
  if (can(perms, 'MANAGE_CHANNELS') || can(perms, 'MANAGE_GUILD')) tabs.push('channels');
  if (can(perms, 'MANAGE_ROLES')) tabs.push('roles');
  if (can(perms, 'CREATE_INVITE') || can(perms, 'MANAGE_GUILD')) tabs.push('invites');
  if (can(perms, 'BAN_MEMBERS')) tabs.push('bans');
  if (can(perms, 'MODERATE_MEMBERS')) tabs.push('reports');
  if (can(perms, 'VIEW_AUDIT_LOG')) tabs.push('audit');
  return tabs;
}

export type MemberAction = 'kick' | 'ban' | 'timeout' | 'remove_timeout' | 'roles';

/** Moderation actions the viewer may take on a member. None on yourself or on the owner. */
export function memberActions(input: {
  myPerms: string[];
  isSelf: boolean;
  targetIsOwner: boolean;
  targetTimedOut: boolean;
}): MemberAction[] {
  if (input.isSelf || input.targetIsOwner) return [];
  const p = input.myPerms;
  const actions: MemberAction[] = [];
  if (can(p, 'KICK_MEMBERS')) actions.push('kick');
  if (can(p, 'BAN_MEMBERS')) actions.push('ban');
  if (can(p, 'MODERATE_MEMBERS')) actions.push(input.targetTimedOut ? 'remove_timeout' : 'timeout');
  if (can(p, 'MANAGE_ROLES')) actions.push('roles');
  return actions;
}

export type MessageAction = 'reply' | 'react' | 'thread' | 'edit' | 'pin' | 'delete' | 'report';

/**
 * Actions on a message, in display order. None on a deleted message. Pinning takes
 * MANAGE_MESSAGES in a guild; in a direct message (`inDm`) anyone in it may pin. A thread
 * starts under a message of a guild channel (not in a DM, not inside a thread) with
 * CREATE_PUBLIC_THREADS, once: a message that has one opens it instead (`hasThread`).
 */
export function messageActions(input: {
  myPerms: string[];
  isAuthor: boolean;
  deleted: boolean;
  inDm?: boolean;
  inThread?: boolean;
  hasThread?: boolean;
}): MessageAction[] {
  if (input.deleted) return [];
  const p = input.myPerms;
  const actions: MessageAction[] = [];
  if (can(p, input.inThread ? 'SEND_MESSAGES_IN_THREADS' : 'SEND_MESSAGES')) actions.push('reply');
  if (can(p, 'ADD_REACTIONS')) actions.push('react');
  if (!input.inDm && !input.inThread && !input.hasThread && can(p, 'CREATE_PUBLIC_THREADS')) actions.push('thread');
  if (input.isAuthor) actions.push('edit');
  if (input.inDm || can(p, 'MANAGE_MESSAGES')) actions.push('pin');
  if (input.isAuthor || can(p, 'MANAGE_MESSAGES')) actions.push('delete');
  if (!input.isAuthor) actions.push('report');
  return actions;
}

export const TIMEOUT_PRESETS: Array<{ label: string; seconds: number }> = [
  { label: '60 seconds', seconds: 60 },
  { label: '5 minutes', seconds: 5 * 60 },
  { label: '10 minutes', seconds: 10 * 60 },
  { label: '1 hour', seconds: 60 * 60 },
  { label: '1 day', seconds: 24 * 60 * 60 },
  { label: '1 week', seconds: 7 * 24 * 60 * 60 },
];

// Voice channels: the pure decisions behind the roster under each voice channel, the voice
// panel and moderators' menu. The server decides who may join and do what (CONNECT,
// MUTE_MEMBERS, DEAFEN_MEMBERS, MOVE_MEMBERS); the client shows only the controls that will
// work and says, in words, why the others are not there.
import type { VoiceMemberFragment } from './generated';
import { can } from './permissions';
import { ApiError, describeError } from './errors';
import { formatFull, formatTime } from './time';

export type VoiceParticipant = VoiceMemberFragment;

/** A channel's roster as the server last answered it, and the guild event it answered after. */
export interface Roster {
  at: number;
  list: VoiceParticipant[];
}

const time = (iso: string) => Date.parse(iso) || 0;

/** Who is in a voice channel, in the order they came (then by handle). */
export function sortRoster(list: readonly VoiceParticipant[]): VoiceParticipant[] {
  return [...list].sort(
    (a, b) => time(a.joinedAt) - time(b.joinedAt) || a.user.handle.localeCompare(b.user.handle) || a.user.id.localeCompare(b.user.id),
  );
}

/**
 * The rosters with `channelId`'s answer to a question asked after guild event `at` (0: none),
 * unless an answer to a later question is already there: answers may come back out of order.
 * Returns `rosters` itself when the answer is stale.
 */
export function withAnswer(rosters: Record<string, Roster>, channelId: string, list: readonly VoiceParticipant[], at: number): Record<string, Roster> {
  const known = rosters[channelId];
  if (known && known.at > at) return rosters;
  return { ...rosters, [channelId]: { at, list: sortRoster(list) } };
}

/**
 * My own entry as I just set it (mute, deafen), before the server's event says so. A
 * moderator's mute or deafen stays whatever I do.
 */
export function withSelf(list: readonly VoiceParticipant[], me: string, muted: boolean, deafened: boolean): VoiceParticipant[] {
  return list.map((p) => (p.user.id === me ? { ...p, muted: muted || p.serverMuted, deafened: deafened || p.serverDeafened } : p));
}

/** The voice channel whose roster lists `userId`, if any. */
export function channelOf(rosters: Record<string, Roster>, userId: string): string | null {
  for (const [id, r] of Object.entries(rosters)) if (r.list.some((p) => p.user.id === userId)) return id;
  return null;
}

/**
 * The rosters to ask again for a voice event: its channel's, and any other that lists its
 * participant now (someone moved, or left a channel the event does not name).
 */
export function rostersToRefetch(
  e: { channelId?: string | null; toChannelId?: string | null; target?: { id: string } | null },
  rosters: Record<string, Roster>,
): string[] {
  const ids = new Set<string>();
  if (e.channelId) ids.add(e.channelId);
  // A move names where to: that roster gains them.
  if (e.toChannelId) ids.add(e.toChannelId);
  const who = e.target?.id;
  if (who) for (const [id, r] of Object.entries(rosters)) if (r.list.some((p) => p.user.id === who)) ids.add(id);
  return [...ids];
}

/** Whether this event says a moderator moved me out of the channel I am in. */
export function movedOut(e: { kind: string; channelId?: string | null; target?: { id: string } | null }, me: string, current: string | null): boolean {
  return e.kind === 'voice.moved' && e.target?.id === me && !!current && (!e.channelId || e.channelId === current);
}

/**
 * Where a moderator moved me, if the rosters know yet: the other voice channel that lists me.
 * (A `voice.moved` event names the channel left; the voice server moves the connection, and
 * says where when it has joined the other room.)
 */
export function movedTo(
  e: { kind: string; channelId?: string | null; target?: { id: string } | null },
  me: string,
  current: string | null,
  rosters: Record<string, Roster>,
): string | null {
  if (!movedOut(e, me, current)) return null;
  for (const [id, r] of Object.entries(rosters)) if (id !== current && r.list.some((p) => p.user.id === me)) return id;
  return null;
}

export type VoiceAction = 'server_mute' | 'server_unmute' | 'server_deafen' | 'server_undeafen' | 'disconnect' | 'move';

/**
 * What a moderator may do to someone in a voice channel, from their permissions in that
 * channel: server mute (MUTE_MEMBERS), server deafen (DEAFEN_MEMBERS), disconnect and move
 * (MOVE_MEMBERS; move only when there is another voice channel). None on oneself: one's own
 * mute, deafen and leave are in the voice panel.
 */
export function voiceActions(input: {
  myPerms: readonly string[];
  isSelf: boolean;
  target: Pick<VoiceParticipant, 'serverMuted' | 'serverDeafened'>;
  otherVoiceChannels: number;
}): VoiceAction[] {
  if (input.isSelf) return [];
  const p = [...input.myPerms];
  const out: VoiceAction[] = [];
  if (can(p, 'MUTE_MEMBERS')) out.push(input.target.serverMuted ? 'server_unmute' : 'server_mute');
  if (can(p, 'DEAFEN_MEMBERS')) out.push(input.target.serverDeafened ? 'server_undeafen' : 'server_deafen');
  if (can(p, 'MOVE_MEMBERS')) {
    out.push('disconnect');
    if (input.otherVoiceChannels > 0) out.push('move');
  }
  return out;
}

/**
 * `serverMuteMember`'s `muted` and `deafened` for an action: the other one stays as it is
 * (the server asks for the permission of what changes only).
 */
export function serverMuteArgs(
  action: 'server_mute' | 'server_unmute' | 'server_deafen' | 'server_undeafen',
  target: Pick<VoiceParticipant, 'serverMuted' | 'serverDeafened'>,
): { muted: boolean; deafened: boolean } {
  switch (action) {
    case 'server_mute':
      return { muted: true, deafened: target.serverDeafened };
    case 'server_unmute':
      return { muted: false, deafened: target.serverDeafened };
    case 'server_deafen':
      return { muted: target.serverMuted, deafened: true };
    case 'server_undeafen':
      return { muted: target.serverMuted, deafened: false };
  }
}

export const VOICE_ACTION_LABELS: Record<VoiceAction, string> = {
  server_mute: 'Server mute',
  server_unmute: 'Remove server mute',
  server_deafen: 'Server deafen',
  server_undeafen: 'Remove server deafen',
  disconnect: 'Disconnect',
  move: 'Move to…',
};

/** What a moderator's action did, for the live region and the toast. */
export function actionDone(action: VoiceAction, handle: string, to?: string): string {
  switch (action) {
    case 'server_mute':
      return `${handle} is muted for everyone.`;
    case 'server_unmute':
      return `${handle} may speak again.`;
    case 'server_deafen':
      return `${handle} is deafened.`;
    case 'server_undeafen':
      return `${handle} can hear again.`;
    case 'disconnect':
      return `${handle} was disconnected from voice.`;
    case 'move':
      return `${handle} was moved to ${to ?? 'another channel'}.`;
  }
}

export const NO_CONNECT = 'You lack the Connect permission in this channel.';
export const VOICE_UNAVAILABLE = 'Voice is not available on this hub: it has no voice server set up. Ask its operator.';

const DAY_MS = 86_400_000;

/**
 * Why the viewer cannot join a voice channel, in words, or null when they can try. What only
 * the server knows (a ban, a limit it counts differently) comes back as its refusal.
 */
export function joinBlock(input: {
  channel: { archived: boolean; myPermissions: readonly string[]; userLimit: number };
  /** People in the channel now. */
  count: number;
  /** Whether the viewer is among them (on another tab or device). */
  inIt: boolean;
  /** The hub answered VOICE_UNAVAILABLE before. */
  unavailable?: boolean;
  timedOutUntil?: string | null;
  now: number;
  timeZone?: string;
  locale?: string;
}): string | null {
  const perms = [...input.channel.myPermissions];
  if (input.unavailable) return VOICE_UNAVAILABLE;
  if (input.channel.archived) return 'This channel is archived: nobody can join it.';
  if (input.timedOutUntil) {
    const until = Date.parse(input.timedOutUntil);
    if (Number.isFinite(until) && until > input.now) {
      const fmt = { timeZone: input.timeZone, locale: input.locale };
      const when = until - input.now < DAY_MS ? formatTime(input.timedOutUntil, fmt) : formatFull(input.timedOutUntil, fmt);
      return `You are timed out until ${when}: you cannot join voice until then.`;
    }
  }
  if (!can(perms, 'CONNECT')) return NO_CONNECT;
  const limit = input.channel.userLimit;
  if (limit > 0 && input.count >= limit && !input.inIt && !can(perms, 'MOVE_MEMBERS')) {
    return `This voice channel is full: ${input.count} of ${limit} places are taken.`;
  }
  return null;
}

/**
 * Whether a refusal says the hub has no voice server at all (VOICE_UNAVAILABLE): Join stays
 * off until a reload. A call the voice server failed is UNAVAILABLE, which may pass: it is
 * shown as the server words it, and Join stays on.
 */
export function isUnavailable(e: unknown): boolean {
  return e instanceof ApiError && e.code === 'VOICE_UNAVAILABLE';
}

/** The server's refusal of `joinVoice`, in words. */
export function joinRefusal(e: unknown): string {
  return isUnavailable(e) ? VOICE_UNAVAILABLE : describeError(e);
}

/** `ws://host:port/path` → `host:port`: where the voice server is, for people. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

// livekit-client's ConnectionErrorReason.
const CANCELLED = 3;
const NOT_ALLOWED = 0;
const LEAVE_REQUEST = 4;

/**
 * Why connecting to the voice server failed, in words; null when the attempt was cancelled
 * (the person left meanwhile). `e` is livekit-client's ConnectionError or anything thrown.
 */
export function connectFailure(e: unknown, url: string): string | null {
  const where = hostOf(url);
  const o = (e && typeof e === 'object' ? e : {}) as { name?: unknown; reason?: unknown; status?: unknown };
  if (o.name === 'ConnectionError') {
    if (o.reason === CANCELLED) return null;
    if (o.reason === NOT_ALLOWED) {
      const status = typeof o.status === 'number' && o.status > 0 ? ` (${o.status})` : '';
      return `The voice server at ${where} turned the connection down${status}. Try again; if it keeps happening, tell the hub's operator.`;
    }
    if (o.reason === LEAVE_REQUEST) return 'The voice server ended the connection while it was being set up. Try again.';
  }
  return `Can't reach the voice server at ${where}: you are not connected, so nobody hears you and you hear nobody. Try again, or tell the hub's operator if it goes on.`;
}

/** Why the microphone could not be opened (getUserMedia's DOMException names). */
export function micFailure(e: unknown): string {
  const name = e && typeof e === 'object' ? (e as { name?: unknown }).name : undefined;
  const rest = 'you can listen, but nobody hears you.';
  if (name === 'NotAllowedError' || name === 'SecurityError') return `The browser did not allow the microphone: ${rest} Allow it for this site, then unmute.`;
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return `No microphone was found: ${rest}`;
  if (name === 'NotReadableError') return `The microphone is in use by another program: ${rest}`;
  return `The microphone could not be opened: ${rest}`;
}

/** Why an established connection ended (livekit-client's DisconnectReason); null: we left. */
export function disconnectedText(reason: number | undefined): string | null {
  switch (reason) {
    case 1: // CLIENT_INITIATED
      return null;
    case 2: // DUPLICATE_IDENTITY
      return 'You joined voice somewhere else, so this tab left it.';
    case 3: // SERVER_SHUTDOWN
      return 'The voice server shut down. Try again in a moment.';
    case 4: // PARTICIPANT_REMOVED
      return 'You were removed from the voice channel.';
    case 5: // ROOM_DELETED
      return "The voice channel's room was closed.";
    default:
      return 'The connection to the voice server was lost.';
  }
}

export type VoiceStatus = 'joining' | 'connecting' | 'connected' | 'reconnecting' | 'failed';

/** The voice panel's first line. */
export function statusText(s: VoiceStatus): string {
  switch (s) {
    case 'joining':
      return 'Joining…';
    case 'connecting':
      return 'Connecting to the voice server…';
    case 'connected':
      return 'Voice connected';
    case 'reconnecting':
      return 'Connection lost: reconnecting…';
    case 'failed':
      return 'Not connected to voice';
  }
}

/** A roster entry, read out: who, and what they are doing. */
export function participantLabel(p: VoiceParticipant, speaking: boolean): string {
  return [p.user.handle, ...participantState(p, speaking)].join(', ');
}

/** What someone in voice is doing, in words (nothing when just listening). */
export function participantState(p: VoiceParticipant, speaking: boolean): string[] {
  const parts: string[] = [];
  if (speaking) parts.push('speaking');
  if (p.serverMuted) parts.push('muted by a moderator');
  else if (p.muted) parts.push('muted');
  if (p.serverDeafened) parts.push('deafened by a moderator');
  else if (p.deafened) parts.push('deafened');
  if (p.camera) parts.push('camera on');
  if (p.screenShare) parts.push('sharing their screen');
  return parts;
}

/** "2/5" beside a voice channel with a user limit; "" without one. */
export function occupancy(count: number, limit: number): string {
  return limit > 0 ? `${count}/${limit}` : '';
}

/** A user limit typed by a moderator: a whole number from 0 (no limit) to 99, or null. */
export function parseLimit(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,2}$/.test(t)) return null;
  return Number(t);
}

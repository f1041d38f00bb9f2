// The open channel's timeline as pure functions: what one live `channelEvents` payload, a
// page of history or a sent message changes in the messages shown and who is typing (a
// reaction's `me` included). Nothing here is mutated; the state (state.svelte.ts) keeps the
// results. When the channel counts as read is the viewer's scrolling, not an event: unread.ts.
import { plainText } from './markdown';
import type { ChannelEvent, Message } from './types';

/** How long someone shows as typing after their last typing event. */
export const TYPING_MS = 6000;

/** What the live events change. */
export interface Live {
  /** The open channel's messages, oldest first, each once. */
  messages: Message[];
  /** The newest event cursor applied: a reconnect that replays events up to it changes nothing. */
  applied: number;
  /** Who is typing (by handle), until when (ms since the epoch). */
  typing: Record<string, number>;
}

/** One event applied: the new `Live`, and what the state should do besides keeping it. */
export interface Step {
  live: Live;
  /** Someone else's new message in words, for the screen reader's live region. */
  announcement?: string;
}

/** A cursor (a decimal position in the event log) as a number; none is 0. */
export function cursorNum(c: string | null | undefined): number {
  return c ? Number(c) || 0 : 0;
}

/** The messages with `m` at the end, unless it is already there (a message is shown once). */
export function withMessage(messages: Message[], m: Message): Message[] {
  return messages.some((x) => x.id === m.id) ? messages : [...messages, m];
}

/** The messages with an older page of history before them, less those already shown. */
export function withOlder(messages: Message[], page: Message[]): Message[] {
  const known = new Set(messages.map((m) => m.id));
  return [...page.filter((m) => !known.has(m.id)), ...messages];
}

/**
 * Applies one channel event, as seen by `me` at `now`. Typing is ephemeral and always
 * applies; every other event applies once, in cursor order, and returns `live` itself when
 * it is a replay.
 */
export function applyEvent(live: Live, e: ChannelEvent, me: string | null, now: number): Step {
  if (e.kind === 'TYPING') {
    if (e.actor.id === me) return { live };
    return { live: { ...live, typing: { ...live.typing, [e.actor.handle]: now + TYPING_MS } } };
  }
  const cursor = cursorNum(e.cursor);
  if (cursor <= live.applied) return { live };
  const next: Live = { ...live, applied: cursor };

  if (e.kind === 'MESSAGE_POSTED') {
    const m = e.message;
    if (!m || live.messages.some((x) => x.id === m.id)) return { live: next };
    // A post of mine that waited for its guild's owning hub arrives: it takes the place
    // of the pending copy the send answered with (the first pending one of the same text).
    const waited = m.author.id === me ? live.messages.findIndex((x) => x.pending && x.author.id === me && x.body === m.body) : -1;
    const messages = waited < 0 ? [...live.messages, m] : live.messages.map((x, i) => (i === waited ? m : x));
    return {
      live: { ...next, messages, typing: without(live.typing, m.author.handle) },
      announcement: m.author.id === me ? undefined : `${m.author.handle}: ${plainText(m.body ?? '')}`,
    };
  }

  const m = live.messages.find((x) => x.id === e.messageId);
  if (!m) return { live: next };
  switch (e.kind) {
    case 'MESSAGE_EDITED':
      return { live: replace(next, { ...m, body: e.body, editedAt: e.at }) };
    case 'MESSAGE_DELETED':
      return { live: replace(next, { ...m, deleted: true, body: null, reactions: [] }) };
    case 'MESSAGE_PINNED':
    case 'MESSAGE_UNPINNED':
      return { live: replace(next, { ...m, pinned: e.kind === 'MESSAGE_PINNED' }) };
    case 'REACTION_ADDED':
    case 'REACTION_REMOVED':
      return { live: e.emoji ? reacted(next, m, e.emoji, e.kind === 'REACTION_ADDED', e.actor.id === me) : next };
  }
}

/** `live` with the message of the same id replaced by `m`. */
function replace(live: Live, m: Message): Live {
  return { ...live, messages: live.messages.map((x) => (x.id === m.id ? m : x)) };
}

/** A reaction added or taken back: counts that reach 0 disappear; `me` follows my own. */
function reacted(live: Live, m: Message, emoji: string, added: boolean, byMe: boolean): Live {
  const delta = added ? 1 : -1;
  const counted = m.reactions.some((r) => r.emoji === emoji)
    ? m.reactions.map((r) => (r.emoji === emoji ? { ...r, count: r.count + delta, me: byMe ? added : r.me } : r))
    : added
      ? [...m.reactions, { emoji, count: 1, me: byMe }]
      : m.reactions;
  return replace(live, { ...m, reactions: counted.filter((r) => r.count > 0) });
}

/** The message with my reaction `emoji` marked as mine or not (the answer to my own toggle). */
export function withMyReaction(m: Message, emoji: string, me: boolean): Message {
  return { ...m, reactions: m.reactions.map((r) => (r.emoji === emoji ? { ...r, me } : r)) };
}

/** A copy of `record` without `key`. */
function without<T>(record: Record<string, T>, key: string): Record<string, T> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => k !== key));
}

// Unread and mention badges, and when to move the read marker: pure, unit-tested.
//
// The server counts (`Channel.unreadCount`, `mentionCount`) as of the newest message it knew
// of (`lastMessageCursor`). Between two answers the client hears of posts on `myEvents` and
// moves markers itself; a badge is the last answer plus what was heard after it, less what
// was read since. So a late answer never brings back a badge that was cleared, and a post
// heard before the server's projection caught up is not lost or counted twice.
import { cursorNum } from './timeline';
import type { Message } from './types';

/** The server's counts for one channel or DM, as of its newest message. */
export interface Known {
  id: string;
  lastMessageCursor: string | null;
  unreadCount: number;
  mentionCount: number;
}

/** A post by someone else heard of live (`myEvents` `message.posted`), not yet in an answer. */
export interface Heard {
  cursor: number;
  mention: boolean;
}

export interface Badge {
  unread: number;
  mentions: number;
}

export const NO_BADGE: Badge = Object.freeze({ unread: 0, mentions: 0 });

/**
 * A channel's badge: the server's counts unless this client read past its newest message,
 * plus the posts heard after both. `readUpTo` is the cursor this client last marked read
 * (or heard another device mark), 0 if none.
 */
export function badge(known: Known | undefined, heard: readonly Heard[], readUpTo: number): Badge {
  const base = cursorNum(known?.lastMessageCursor);
  let unread = 0;
  let mentions = 0;
  if (known && base > readUpTo) {
    unread = known.unreadCount;
    mentions = known.mentionCount;
  }
  for (const h of heard) {
    if (h.cursor > base && h.cursor > readUpTo) {
      unread++;
      if (h.mention) mentions++;
    }
  }
  return { unread, mentions };
}

/** The posts heard that a fresh answer (newest message at `known`) does not count yet. */
export function stillHeard(heard: readonly Heard[], known: Known | undefined): Heard[] {
  const base = cursorNum(known?.lastMessageCursor);
  return heard.filter((h) => h.cursor > base);
}

/** `heard` with one more post, unless it is there already (a replayed event). */
export function withHeard(heard: readonly Heard[], h: Heard): Heard[] {
  return heard.some((x) => x.cursor === h.cursor) ? [...heard] : [...heard, h];
}

/** A DM's badge: everything in it is addressed to the viewer, so every unread counts as a mention. */
export function addressed(b: Badge): Badge {
  return { unread: b.unread, mentions: b.unread };
}

/** The sum of badges, e.g. a guild's over its channels. */
export function total(badges: Iterable<Badge>): Badge {
  let unread = 0;
  let mentions = 0;
  for (const b of badges) {
    unread += b.unread;
    mentions += b.mentions;
  }
  return { unread, mentions };
}

/** A count as a badge shows it: the server stops counting at 1,000. */
export function countLabel(n: number): string {
  return n >= 1000 ? '999+' : String(n);
}

/**
 * The first message after the read marker not written by `me`: where "jump to first unread"
 * lands. `lastReadId` null means never read: the first message by someone else. `undefined`
 * when the marker is older than the loaded messages (load older ones first) or nothing is
 * unread.
 */
export function firstUnread(
  messages: readonly Message[],
  lastReadId: string | null,
  me: string | null,
  hasOlder: boolean,
): Message | undefined {
  let from = 0;
  if (lastReadId !== null) {
    const at = messages.findIndex((m) => m.id === lastReadId);
    if (at < 0) return undefined;
    from = at + 1;
  } else if (hasOlder) {
    return undefined;
  }
  return messages.slice(from).find((m) => m.author.id !== me && !m.deleted && !m.pending);
}

/** The newest message a read marker may point at: pending ones have provisional ids. */
export function newestMarkable(messages: readonly Message[]): Message | undefined {
  for (let i = messages.length - 1; i >= 0; i--) if (!messages[i].pending) return messages[i];
  return undefined;
}

/** At most one `markRead` a second. */
export const MARK_GAP_MS = 1000;

export type MarkPlan = { do: 'skip' } | { do: 'send' } | { do: 'wait'; ms: number };

/**
 * Whether to mark `cursor` read now: never when it is not newer than what was marked
 * (`marked`), else now unless the last `markRead` went out less than a second ago (`lastAt`),
 * in which case after the rest of that second (the newest message then is marked).
 */
export function planMark(marked: number, cursor: number, lastAt: number, now: number): MarkPlan {
  if (cursor <= marked) return { do: 'skip' };
  const since = now - lastAt;
  if (since >= MARK_GAP_MS) return { do: 'send' };
  return { do: 'wait', ms: MARK_GAP_MS - since };
}

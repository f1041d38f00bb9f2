// Threads as the parent channel shows them: the "N replies · last active …" line under a
// message, and what a thread's activity changes in the parent's timeline. Pure, unit-tested;
// the open thread's own timeline is the same live logic as a channel's (timeline.ts).
import type { Message } from './types';

export type ThreadSummary = NonNullable<Message['thread']>;

/** "1 reply", "3 replies", "No replies yet". */
export function replyLabel(count: number): string {
  if (count <= 0) return 'No replies yet';
  return `${count} ${count === 1 ? 'reply' : 'replies'}`;
}

/** How long ago, in words: "just now", "5 min ago", "3 h ago", "2 d ago". */
export function agoLabel(iso: string | null | undefined, now: Date): string {
  const t = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, Math.round((now.getTime() - t) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** The line under a message with a thread: "2 replies · last active 5 min ago". */
export function threadLine(t: Pick<ThreadSummary, 'messageCount' | 'lastActivity'>, now: Date): string {
  const ago = agoLabel(t.lastActivity, now);
  return ago ? `${replyLabel(t.messageCount)} · last active ${ago}` : replyLabel(t.messageCount);
}

/** The messages with `messageId`'s thread set (a thread was just started from it). */
export function withThread(messages: Message[], messageId: string, thread: ThreadSummary): Message[] {
  return messages.map((m) => (m.id === messageId ? { ...m, thread } : m));
}

/**
 * The messages with the thread `threadId` showing `messageCount` replies, last active at
 * `lastActivity` (the open thread heard a post or a deletion). Unchanged if none has it.
 */
export function withThreadActivity(messages: Message[], threadId: string, messageCount: number, lastActivity: string | null): Message[] {
  if (!messages.some((m) => m.thread?.id === threadId)) return messages;
  return messages.map((m) =>
    m.thread?.id === threadId ? { ...m, thread: { ...m.thread, messageCount, lastActivity: lastActivity ?? m.thread.lastActivity } } : m,
  );
}

/**
 * A newer page of the parent's messages told us about threads (another member started one):
 * the shown messages take their `thread` from it.
 */
export function withThreadsFrom(messages: Message[], page: Message[]): Message[] {
  const byId = new Map(page.map((m) => [m.id, m.thread]));
  let changed = false;
  const out = messages.map((m) => {
    const t = byId.get(m.id);
    if (t === undefined || (t?.id === m.thread?.id && t?.messageCount === m.thread?.messageCount)) return m;
    changed = true;
    return { ...m, thread: t };
  });
  return changed ? out : messages;
}

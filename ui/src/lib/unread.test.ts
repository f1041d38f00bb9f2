import { describe, expect, it } from 'vitest';
import {
  addressed,
  badge,
  countLabel,
  firstUnread,
  newestMarkable,
  planMark,
  stillHeard,
  total,
  withHeard,
  MARK_GAP_MS,
  type Known,
} from './unread';
import type { Message } from './types';

const known = (over: Partial<Known> = {}): Known => ({ id: 'c1', lastMessageCursor: '10', unreadCount: 3, mentionCount: 1, ...over });
const ann = { id: '@ann:hub', handle: 'ann' };
const bob = { id: '@bob:hub', handle: 'bob' };
const msg = (id: string, cursor: number, over: Partial<Message> = {}): Message => ({
  id,
  channelId: 'c1',
  author: ann,
  body: id,
  replyToId: null,
  createdAt: '2026-12-02T10:00:00Z',
  editedAt: null,
  deleted: false,
  pinned: false,
  pending: false,
  cursor: String(cursor),
  reactions: [],
  attachments: [],
  thread: null,
  ...over,
});

describe('badge', () => {
  it("is the server's counts when nothing happened since", () => {
    expect(badge(known(), [], 0)).toEqual({ unread: 3, mentions: 1 });
  });

  it('adds the posts heard after the answer, mentions to both counts', () => {
    const heard = [
      { cursor: 11, mention: false },
      { cursor: 12, mention: true },
    ];
    expect(badge(known(), heard, 0)).toEqual({ unread: 5, mentions: 2 });
  });

  it('does not count twice a post the answer already counted', () => {
    expect(badge(known({ lastMessageCursor: '12' }), [{ cursor: 12, mention: true }], 0)).toEqual({ unread: 3, mentions: 1 });
  });

  it('is cleared once read past the newest message, even by a late answer', () => {
    expect(badge(known(), [], 10)).toEqual({ unread: 0, mentions: 0 });
    expect(badge(known(), [{ cursor: 11, mention: true }], 11)).toEqual({ unread: 0, mentions: 0 });
  });

  it('counts what came after the read, even before the server knew of it', () => {
    expect(badge(known(), [{ cursor: 15, mention: false }], 12)).toEqual({ unread: 1, mentions: 0 });
  });

  it('trusts a newer answer over an older read (the server counted after its marker)', () => {
    expect(badge(known({ lastMessageCursor: '20', unreadCount: 1, mentionCount: 0 }), [], 12)).toEqual({ unread: 1, mentions: 0 });
  });

  it('counts posts heard in a channel the client has no answer for yet (a new DM)', () => {
    expect(badge(undefined, [{ cursor: 5, mention: false }], 0)).toEqual({ unread: 1, mentions: 0 });
  });
});

describe('heard posts', () => {
  it('are kept only while an answer does not count them', () => {
    const heard = [
      { cursor: 9, mention: false },
      { cursor: 11, mention: true },
    ];
    expect(stillHeard(heard, known())).toEqual([{ cursor: 11, mention: true }]);
    expect(stillHeard(heard, undefined)).toEqual(heard);
  });

  it('are heard once: a replayed event adds nothing', () => {
    const once = withHeard([], { cursor: 11, mention: false });
    expect(withHeard(once, { cursor: 11, mention: false })).toEqual(once);
  });
});

describe('total and labels', () => {
  it('sums badges (a guild over its channels)', () => {
    expect(total([{ unread: 2, mentions: 1 }, { unread: 0, mentions: 0 }, { unread: 5, mentions: 0 }])).toEqual({ unread: 7, mentions: 1 });
    expect(total([])).toEqual({ unread: 0, mentions: 0 });
  });

  it('counts every unread message of a DM as a mention: it is addressed to me', () => {
    expect(addressed({ unread: 3, mentions: 0 })).toEqual({ unread: 3, mentions: 3 });
  });

  it('shows the counting bound as 999+', () => {
    expect(countLabel(3)).toBe('3');
    expect(countLabel(1000)).toBe('999+');
  });
});

describe('firstUnread', () => {
  const page = [msg('m1', 1), msg('m2', 2, { author: bob }), msg('m3', 3), msg('m4', 4)];

  it('is the first message after the marker by someone else', () => {
    expect(firstUnread(page, 'm1', bob.id, false)?.id).toBe('m3');
    expect(firstUnread(page, 'm3', bob.id, false)?.id).toBe('m4');
  });

  it('skips deleted and pending messages', () => {
    const p = [msg('m1', 1), msg('m2', 2, { deleted: true }), msg('m3', 3, { pending: true }), msg('m4', 4)];
    expect(firstUnread(p, 'm1', bob.id, false)?.id).toBe('m4');
  });

  it('is nothing when the marker is at the newest message', () => {
    expect(firstUnread(page, 'm4', bob.id, false)).toBeUndefined();
  });

  it('needs older pages when the marker is not loaded', () => {
    expect(firstUnread(page, 'm0', bob.id, true)).toBeUndefined();
  });

  it('never read: the first message by someone else, once the start is loaded', () => {
    expect(firstUnread(page, null, bob.id, false)?.id).toBe('m1');
    expect(firstUnread(page, null, bob.id, true)).toBeUndefined();
  });
});

describe('newestMarkable', () => {
  it('is the newest message that is not pending (a provisional id)', () => {
    expect(newestMarkable([msg('m1', 1), msg('m2', 2), msg('p', 0, { pending: true })])?.id).toBe('m2');
    expect(newestMarkable([])).toBeUndefined();
  });
});

describe('planMark', () => {
  const NOW = 1_700_000_000_000;

  it('skips what is not newer than the last marked', () => {
    expect(planMark(10, 10, 0, NOW)).toEqual({ do: 'skip' });
    expect(planMark(10, 9, 0, NOW)).toEqual({ do: 'skip' });
  });

  it('sends a newer one at once when the last went out a second ago or more', () => {
    expect(planMark(10, 11, NOW - MARK_GAP_MS, NOW)).toEqual({ do: 'send' });
    expect(planMark(0, 1, 0, NOW)).toEqual({ do: 'send' });
  });

  it('waits out the rest of the second otherwise', () => {
    expect(planMark(10, 11, NOW - 300, NOW)).toEqual({ do: 'wait', ms: 700 });
  });
});

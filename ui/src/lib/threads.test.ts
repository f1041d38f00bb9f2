import { describe, expect, it } from 'vitest';
import { agoLabel, replyLabel, threadLine, withThread, withThreadActivity, withThreadsFrom } from './threads';
import type { Message } from './types';

const msg = (id: string, over: Partial<Message> = {}): Message => ({
  id,
  channelId: 'c1',
  author: { id: '@ann:hub', handle: 'ann' },
  body: id,
  replyToId: null,
  createdAt: '2026-12-02T10:00:00Z',
  editedAt: null,
  deleted: false,
  pinned: false,
  pending: false,
  cursor: '1',
  reactions: [],
  attachments: [],
  thread: null,
  ...over,
});
const NOW = new Date('2026-12-02T12:00:00Z');
const t1 = { id: 't1', name: 'plans', messageCount: 0, lastActivity: '2026-12-02T11:55:00Z' };

describe('thread lines', () => {
  it('counts replies in words', () => {
    expect(replyLabel(0)).toBe('No replies yet');
    expect(replyLabel(1)).toBe('1 reply');
    expect(replyLabel(12)).toBe('12 replies');
  });
  it('says how long ago', () => {
    expect(agoLabel('2026-12-02T11:59:30Z', NOW)).toBe('just now');
    expect(agoLabel('2026-12-02T11:55:00Z', NOW)).toBe('5 min ago');
    expect(agoLabel('2026-12-02T09:00:00Z', NOW)).toBe('3 h ago');
    expect(agoLabel('2026-11-29T12:00:00Z', NOW)).toBe('3 d ago');
    expect(agoLabel(null, NOW)).toBe('');
    expect(agoLabel('2026-12-02T12:00:05Z', NOW)).toBe('just now');
  });
  it('puts them together', () => {
    expect(threadLine({ messageCount: 1, lastActivity: '2026-12-02T11:55:00Z' }, NOW)).toBe('1 reply · last active 5 min ago');
    expect(threadLine({ messageCount: 2, lastActivity: null }, NOW)).toBe('2 replies');
  });
});

describe('a thread in the parent timeline', () => {
  it('is set on the message it was started from', () => {
    const out = withThread([msg('a'), msg('b')], 'b', t1);
    expect(out.map((m) => m.thread)).toEqual([null, t1]);
  });
  it("follows the thread's activity", () => {
    const ms = [msg('a'), msg('b', { thread: t1 })];
    const out = withThreadActivity(ms, 't1', 1, '2026-12-02T12:00:00Z');
    expect(out[1].thread).toEqual({ ...t1, messageCount: 1, lastActivity: '2026-12-02T12:00:00Z' });
    expect(out[0]).toBe(ms[0]);
    expect(withThreadActivity(ms, 'other', 3, null)).toBe(ms);
  });
  it('takes threads from a newer page of the same messages', () => {
    const ms = [msg('a'), msg('b')];
    const out = withThreadsFrom(ms, [msg('b', { thread: t1 }), msg('c')]);
    expect(out[1].thread).toEqual(t1);
    expect(out[0]).toBe(ms[0]);
    expect(withThreadsFrom(out, [msg('b', { thread: t1 })])).toBe(out);
  });
});

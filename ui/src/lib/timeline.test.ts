import { describe, expect, it } from 'vitest';
import type { ChannelEventKind } from './generated';
import { applyEvent, cursorNum, TYPING_MS, withMessage, withMyReaction, withOlder, type Live } from './timeline';
import type { ChannelEvent, Message } from './types';

const ann = { id: '@ann:hub', handle: 'ann' };
const me = { id: '@bob:hub', handle: 'bob' };
const NOW = 1_700_000_000_000;

/** Frozen all the way down: a function that mutates its input throws. */
function frozen<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}

const message = (id: string, over: Partial<Message> = {}): Message =>
  frozen({
    id,
    channelId: 'c1',
    author: ann,
    body: `text of ${id}`,
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

let lastCursor = 100;
const event = (kind: ChannelEventKind, over: Partial<ChannelEvent> = {}): ChannelEvent =>
  frozen({
    cursor: String(++lastCursor),
    kind,
    channelId: 'c1',
    actor: ann,
    at: '2026-12-02T10:05:00Z',
    messageId: null,
    body: null,
    emoji: null,
    message: null,
    ...over,
  });

const live = (over: Partial<Live> = {}): Live => frozen({ messages: [], applied: 0, typing: {}, ...over });
const apply = (l: Live, e: ChannelEvent) => applyEvent(l, e, me.id, NOW);
const applyAll = (l: Live, events: ChannelEvent[]) => events.reduce((acc, e) => apply(acc, e).live, l);
const react = (messageId: string, emoji: string, actor = ann, added = true) =>
  event(added ? 'REACTION_ADDED' : 'REACTION_REMOVED', { messageId, emoji, actor });
const reactions = (l: Live, id: string) => l.messages.find((m) => m.id === id)?.reactions;

describe('a posted message', () => {
  it('is appended and announced in words', () => {
    const m = message('m2', { body: '**hi** there', cursor: '7' });
    const step = apply(live({ messages: [message('m1')] }), event('MESSAGE_POSTED', { message: m }));
    expect(step.live.messages.map((x) => x.id)).toEqual(['m1', 'm2']);
    expect(step.announcement).toBe('ann: hi there');
  });

  it('of mine is shown but not announced', () => {
    const step = apply(live(), event('MESSAGE_POSTED', { actor: me, message: message('m1', { author: me }) }));
    expect(step.live.messages).toHaveLength(1);
    expect(step.announcement).toBeUndefined();
  });

  it('ends its author typing, and only theirs', () => {
    const start = live({ typing: { ann: NOW + 1000, cy: NOW + 2000 } });
    const step = apply(start, event('MESSAGE_POSTED', { message: message('m1') }));
    expect(step.live.typing).toEqual({ cy: NOW + 2000 });
  });

  it('is never shown twice: one the history page already brought changes nothing', () => {
    const m = message('m1');
    const start = live({ messages: [m] });
    const step = apply(start, event('MESSAGE_POSTED', { message: m }));
    expect(step.live.messages).toBe(start.messages);
    expect(step.announcement).toBeUndefined();
  });

  it('without a message (not visible to me) only moves the cursor', () => {
    const start = live({ messages: [message('m1')] });
    const e = event('MESSAGE_POSTED');
    const step = apply(start, e);
    expect(step.live).toEqual({ ...start, applied: Number(e.cursor) });
  });
});

describe('events are applied once per cursor', () => {
  it('a replayed event is ignored and returns the same state', () => {
    const e = react('m1', '👍');
    const once = apply(live({ messages: [message('m1')] }), e).live;
    expect(reactions(once, 'm1')).toEqual([{ emoji: '👍', count: 1, me: false }]);
    expect(apply(once, e).live).toBe(once);
  });

  it('a reconnect that replays a whole run changes nothing', () => {
    const run = [
      event('MESSAGE_POSTED', { message: message('m2', { cursor: String(lastCursor + 1) }) }),
      event('MESSAGE_EDITED', { messageId: 'm1', body: 'edited' }),
      react('m1', '🎉'),
      react('m2', '🎉', me),
    ];
    const once = applyAll(live({ messages: [message('m1')] }), run);
    expect(applyAll(once, run)).toEqual(once);
    expect(once.messages.map((m) => m.id)).toEqual(['m1', 'm2']);
    expect(reactions(once, 'm1')).toEqual([{ emoji: '🎉', count: 1, me: false }]);
  });

  it('an event older than the last one applied is ignored', () => {
    const start = live({ messages: [message('m1')], applied: 50 });
    expect(apply(start, { ...react('m1', '👍'), cursor: '49' }).live).toBe(start);
    expect(apply(start, { ...react('m1', '👍'), cursor: '50' }).live).toBe(start);
  });

  it('compares cursors as numbers, not as text', () => {
    const start = live({ messages: [message('m1')] });
    const after = applyAll(start, [
      { ...react('m1', '👍'), cursor: '9' },
      { ...react('m1', '👍', me), cursor: '10' },
    ]);
    expect(after.applied).toBe(10);
    expect(reactions(after, 'm1')).toEqual([{ emoji: '👍', count: 2, me: true }]);
  });

  it('an event for a message not loaded (older history) only moves the cursor', () => {
    const start = live({ messages: [message('m1')] });
    const e = event('MESSAGE_DELETED', { messageId: 'gone' });
    expect(apply(start, e).live).toEqual({ ...start, applied: Number(e.cursor) });
  });
});

describe('changes to a message', () => {
  const start = live({ messages: [message('m1'), message('m2', { reactions: [{ emoji: '👍', count: 2, me: false }] })] });

  it('an edit replaces the body and records when, leaving the others as they were', () => {
    const after = apply(start, event('MESSAGE_EDITED', { messageId: 'm1', body: 'new text', at: '2026-12-02T11:00:00Z' })).live;
    expect(after.messages[0]).toMatchObject({ id: 'm1', body: 'new text', editedAt: '2026-12-02T11:00:00Z' });
    expect(after.messages[1]).toBe(start.messages[1]);
  });

  it('a deletion (redaction) empties the body and the reactions', () => {
    const after = apply(start, event('MESSAGE_DELETED', { messageId: 'm2' })).live;
    expect(after.messages[1]).toMatchObject({ id: 'm2', deleted: true, body: null, reactions: [] });
    expect(after.messages[0]).toBe(start.messages[0]);
  });

  it('pinning and unpinning', () => {
    const pinned = apply(start, event('MESSAGE_PINNED', { messageId: 'm1' })).live;
    expect(pinned.messages[0].pinned).toBe(true);
    expect(apply(pinned, event('MESSAGE_UNPINNED', { messageId: 'm1' })).live.messages[0].pinned).toBe(false);
  });
});

describe('reactions', () => {
  const start = live({ messages: [message('m1', { reactions: [{ emoji: '👍', count: 1, me: false }] })] });

  it('a new emoji counts 1, after the ones already there; another adds to its count', () => {
    const after = applyAll(start, [react('m1', '🎉'), react('m1', '🎉', me), react('m1', '👍', me)]);
    expect(reactions(after, 'm1')).toEqual([
      { emoji: '👍', count: 2, me: true },
      { emoji: '🎉', count: 2, me: true },
    ]);
  });

  it('taking one back lowers the count, and a count of 0 disappears', () => {
    const after = applyAll(start, [react('m1', '👍', me), react('m1', '👍', ann, false)]);
    expect(reactions(after, 'm1')).toEqual([{ emoji: '👍', count: 1, me: true }]);
    expect(reactions(apply(after, react('m1', '👍', me, false)).live, 'm1')).toEqual([]);
  });

  it('taking back one that is not counted changes no count', () => {
    expect(reactions(apply(start, react('m1', '❤️', ann, false)).live, 'm1')).toEqual([{ emoji: '👍', count: 1, me: false }]);
  });

  it('mine are marked me, so pressing one again removes it; others leave me as it was', () => {
    const added = applyAll(start, [react('m1', '🎉', me), react('m1', '👀')]);
    expect(reactions(added, 'm1')).toEqual([
      { emoji: '👍', count: 1, me: false },
      { emoji: '🎉', count: 1, me: true },
      { emoji: '👀', count: 1, me: false },
    ]);
    const other = applyAll(added, [react('m1', '🎉', ann)]);
    expect(reactions(other, 'm1')?.[1]).toEqual({ emoji: '🎉', count: 2, me: true });
    const back = applyAll(other, [react('m1', '🎉', me, false)]);
    expect(reactions(back, 'm1')?.[1]).toEqual({ emoji: '🎉', count: 1, me: false });
  });

  it('the answer to my own toggle marks only that emoji', () => {
    const m = message('m1', { reactions: [{ emoji: '👍', count: 2, me: false }, { emoji: '🎉', count: 1, me: false }] });
    expect(withMyReaction(m, '👍', true).reactions).toEqual([
      { emoji: '👍', count: 2, me: true },
      { emoji: '🎉', count: 1, me: false },
    ]);
  });

  it('one without an emoji only moves the cursor', () => {
    const e = event('REACTION_ADDED', { messageId: 'm1' });
    expect(apply(start, e).live).toEqual({ ...start, applied: Number(e.cursor) });
  });
});

describe('typing', () => {
  it('shows someone typing for a while from now', () => {
    const after = apply(live(), event('TYPING')).live;
    expect(after.typing).toEqual({ ann: NOW + TYPING_MS });
  });

  it('never shows me typing', () => {
    const start = live();
    expect(apply(start, event('TYPING', { actor: me })).live).toBe(start);
  });

  it('is not held back by the cursor (it carries the last stored event\'s, often applied already)', () => {
    const after = apply(live({ applied: 500 }), { ...event('TYPING'), cursor: '500' }).live;
    expect(after.typing.ann).toBe(NOW + TYPING_MS);
    expect(after.applied).toBe(500);
  });
});

describe('history and sending', () => {
  it('an older page goes before, less the messages already shown', () => {
    const shown = frozen([message('m3'), message('m4')]);
    expect(withOlder(shown, [message('m1'), message('m2'), message('m3')]).map((m) => m.id)).toEqual(['m1', 'm2', 'm3', 'm4']);
  });

  it('a sent message is appended once, even when its live event came first', () => {
    const shown = frozen([message('m1')]);
    expect(withMessage(shown, message('m2')).map((m) => m.id)).toEqual(['m1', 'm2']);
    expect(withMessage(shown, message('m1'))).toBe(shown);
  });
});

describe('cursorNum', () => {
  it('reads a cursor as a number, and none or nonsense as 0', () => {
    expect(cursorNum('42')).toBe(42);
    expect(cursorNum(null)).toBe(0);
    expect(cursorNum(undefined)).toBe(0);
    expect(cursorNum('')).toBe(0);
    expect(cursorNum('abc')).toBe(0);
  });
});

describe('a post that waited for the owning hub', () => {
  it('takes the place of its pending copy when it arrives', () => {
    const pending = message('provisional', { author: me, body: 'sent while away', pending: true, cursor: '0' });
    const other = message('m1');
    const real = message('m9', { author: me, body: 'sent while away', cursor: '9' });
    const step = apply(live({ messages: [pending, other] }), event('MESSAGE_POSTED', { message: real, actor: me }));
    expect(step.live.messages.map((m) => m.id)).toEqual(['m9', 'm1']);
    expect(step.live.messages[0].pending).toBe(false);
  });

  it('leaves another pending post of different text waiting', () => {
    const pending = message('provisional', { author: me, body: 'still waiting', pending: true, cursor: '0' });
    const real = message('m9', { author: me, body: 'something else', cursor: '9' });
    const step = apply(live({ messages: [pending] }), event('MESSAGE_POSTED', { message: real, actor: me }));
    expect(step.live.messages.map((m) => m.id)).toEqual(['provisional', 'm9']);
  });
});

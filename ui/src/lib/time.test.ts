import { describe, expect, it } from 'vitest';
import { dayKey, formatFull, formatTime, groupTimeline, relativeUntil, type TimelineMsg } from './time';

let nextId = 0;
const msg = (authorId: string, createdAt: string, replyToId?: string | null): TimelineMsg => ({
  id: `m${++nextId}`,
  authorId,
  createdAt,
  replyToId,
});

const now = new Date('2026-12-02T12:00:00Z'); // a Wednesday
const heads = (items: ReturnType<typeof groupTimeline>) =>
  items.filter((i) => i.kind === 'message').map((i) => (i.kind === 'message' ? i.head : null));
const days = (items: ReturnType<typeof groupTimeline>) =>
  items.filter((i) => i.kind === 'day').map((i) => (i.kind === 'day' ? i.label : null));

describe('groupTimeline', () => {
  it('returns nothing for no messages', () => {
    expect(groupTimeline([], { now })).toEqual([]);
  });

  it('puts a day separator before the first message and marks it head', () => {
    const m = msg('a', '2026-12-02T10:00:00Z');
    expect(groupTimeline([m], { now, timeZone: 'UTC' })).toEqual([
      { kind: 'day', key: 'day-2026-12-02', label: 'Today' },
      { kind: 'message', key: m.id, msg: m, head: true },
    ]);
  });

  it('groups consecutive messages by the same author', () => {
    const items = groupTimeline(
      [msg('a', '2026-12-02T10:00:00Z'), msg('a', '2026-12-02T10:01:00Z'), msg('a', '2026-12-02T10:03:00Z')],
      { now, timeZone: 'UTC' },
    );
    expect(heads(items)).toEqual([true, false, false]);
    expect(items).toHaveLength(4);
  });

  it('starts a new group when the author changes', () => {
    const items = groupTimeline(
      [msg('a', '2026-12-02T10:00:00Z'), msg('b', '2026-12-02T10:00:30Z'), msg('a', '2026-12-02T10:01:00Z')],
      { now, timeZone: 'UTC' },
    );
    expect(heads(items)).toEqual([true, true, true]);
  });

  it('groups at exactly 7 minutes but not one second later', () => {
    const items = groupTimeline(
      [
        msg('a', '2026-12-02T10:00:00Z'),
        msg('a', '2026-12-02T10:07:00Z'), // exactly 7 minutes: same group
        msg('a', '2026-12-02T10:14:01Z'), // 7 minutes and 1 second: new group
      ],
      { now, timeZone: 'UTC' },
    );
    expect(heads(items)).toEqual([true, false, true]);
  });

  it('measures the 7 minutes from the previous message, not the group head', () => {
    const items = groupTimeline(
      [msg('a', '2026-12-02T10:00:00Z'), msg('a', '2026-12-02T10:06:00Z'), msg('a', '2026-12-02T10:12:00Z')],
      { now, timeZone: 'UTC' },
    );
    expect(heads(items)).toEqual([true, false, false]);
  });

  it('makes a reply start a new group', () => {
    const items = groupTimeline(
      [
        msg('a', '2026-12-02T10:00:00Z'),
        msg('a', '2026-12-02T10:00:10Z', 'm0'),
        msg('a', '2026-12-02T10:00:20Z', null),
        msg('a', '2026-12-02T10:00:30Z', ''),
      ],
      { now, timeZone: 'UTC' },
    );
    expect(heads(items)).toEqual([true, true, false, false]);
  });

  it('labels Today, Yesterday and older days', () => {
    const items = groupTimeline(
      [
        msg('a', '2026-11-30T09:00:00Z'),
        msg('a', '2026-12-01T09:00:00Z'),
        msg('a', '2026-12-02T09:00:00Z'),
      ],
      { now, timeZone: 'UTC' },
    );
    const labels = days(items);
    expect(labels[0]).toMatch(/^Monday,? 30 November 2026$/);
    expect(labels.slice(1)).toEqual(['Yesterday', 'Today']);
    expect(items.map((i) => i.kind)).toEqual(['day', 'message', 'day', 'message', 'day', 'message']);
  });

  it('starts a new group at midnight even for the same author a minute later', () => {
    const items = groupTimeline(
      [msg('a', '2026-11-30T23:59:30Z'), msg('a', '2026-12-01T00:00:30Z')],
      { now, timeZone: 'UTC' },
    );
    expect(items.map((i) => i.kind)).toEqual(['day', 'message', 'day', 'message']);
    expect(heads(items)).toEqual([true, true]);
  });

  it('puts the day boundary where the time zone says', () => {
    // 10:30 and 11:30 UTC on 1 December: the same day in UTC, but in Auckland (UTC+13 in
    // December) 23:30 on the 1st and 00:30 on the 2nd.
    const msgs = [msg('a', '2026-12-01T10:30:00Z'), msg('a', '2026-12-01T11:30:00Z')];
    const utc = groupTimeline(msgs, { now, timeZone: 'UTC' });
    const akl = groupTimeline(msgs, { now, timeZone: 'Pacific/Auckland' });
    expect(days(utc)).toEqual(['Yesterday']);
    expect(heads(utc)).toEqual([true, true]); // an hour apart
    expect(days(akl)).toHaveLength(2);
    expect(days(akl)[0]).toMatch(/^Tuesday,? 1 December 2026$/);
    // now (2 Dec 12:00 UTC) is 3 Dec 01:00 in Auckland, so 2 Dec is Yesterday there
    expect(days(akl)[1]).toBe('Yesterday');
    expect(akl.filter((i) => i.kind === 'day').map((i) => i.key)).toEqual(['day-2026-12-01', 'day-2026-12-02']);
  });

  it('computes Today and Yesterday in the given time zone', () => {
    const late = new Date('2026-12-01T20:00:00Z'); // 2 Dec 09:00 in Auckland
    const m = [msg('a', '2026-12-01T19:00:00Z')];
    expect(days(groupTimeline(m, { now: late, timeZone: 'UTC' }))).toEqual(['Today']);
    expect(days(groupTimeline(m, { now: late, timeZone: 'Pacific/Auckland' }))).toEqual(['Today']);
    expect(days(groupTimeline(m, { now: new Date('2026-12-02T01:00:00Z'), timeZone: 'UTC' }))).toEqual([
      'Yesterday',
    ]);
  });

  it('handles Yesterday across a month and year boundary', () => {
    const items = groupTimeline([msg('a', '2026-12-31T23:00:00Z')], {
      now: new Date('2027-01-01T01:00:00Z'),
      timeZone: 'UTC',
    });
    expect(days(items)).toEqual(['Yesterday']);
  });

  it('uses the locale for the date label', () => {
    const items = groupTimeline([msg('a', '2026-11-30T09:00:00Z')], { now, timeZone: 'UTC', locale: 'de-DE' });
    expect(days(items)[0]).toContain('30. November 2026');
  });

  it('keeps the message objects and uses their ids as keys', () => {
    const m = { ...msg('a', '2026-12-02T10:00:00Z'), body: 'hi' };
    const items = groupTimeline([m], { now, timeZone: 'UTC' });
    const item = items[1];
    expect(item.kind === 'message' && item.msg.body).toBe('hi');
    expect(item.key).toBe(m.id);
  });

  it('survives an invalid date', () => {
    const items = groupTimeline([msg('a', 'garbage'), msg('a', '2026-12-02T10:00:00Z')], { now, timeZone: 'UTC' });
    expect(items.map((i) => i.kind)).toEqual(['day', 'message', 'day', 'message']);
    expect(heads(items)).toEqual([true, true]);
  });
});

describe('dayKey', () => {
  it('gives the calendar day in the time zone', () => {
    const d = new Date('2026-06-30T23:30:00Z');
    expect(dayKey(d, 'UTC')).toBe('2026-06-30');
    expect(dayKey(d, 'Pacific/Auckland')).toBe('2026-07-01');
    expect(dayKey(d, 'America/Los_Angeles')).toBe('2026-06-30');
  });
});

describe('formatTime and formatFull', () => {
  it('formats HH:MM in 24-hour time', () => {
    expect(formatTime('2026-12-02T09:05:00Z', { timeZone: 'UTC' })).toBe('09:05');
    expect(formatTime('2026-12-02T21:45:00Z', { timeZone: 'UTC' })).toBe('21:45');
    expect(formatTime('2026-12-02T00:00:00Z', { timeZone: 'UTC', locale: 'en-US' })).toBe('00:00');
  });

  it('formats in the given time zone', () => {
    expect(formatTime('2026-12-02T09:05:00Z', { timeZone: 'Pacific/Auckland' })).toBe('22:05');
    expect(formatTime('2026-12-02T09:05:00Z', { timeZone: 'Asia/Kolkata' })).toBe('14:35');
  });

  it('formats the full date and time for tooltips', () => {
    const s = formatFull('2026-11-30T09:05:00Z', { timeZone: 'UTC' });
    expect(s).toContain('Monday');
    expect(s).toContain('30 November 2026');
    expect(s).toContain('09:05');
  });

  it('returns an empty string for an invalid date', () => {
    expect(formatTime('nope', {})).toBe('');
    expect(formatFull('nope', {})).toBe('');
  });

  it('falls back when the time zone is unknown', () => {
    expect(formatTime('2026-12-02T09:05:00Z', { timeZone: 'Not/AZone' })).toMatch(/^\d\d:\d\d$/);
  });
});

describe('relativeUntil', () => {
  const t0 = new Date('2026-12-02T12:00:00Z');
  const at = (ms: number) => new Date(t0.getTime() + ms).toISOString();

  it('says seconds under a minute', () => {
    expect(relativeUntil(at(45_000), t0)).toBe('in 45 seconds');
    expect(relativeUntil(at(1_000), t0)).toBe('in 1 second');
  });

  it('says minutes, rounding up', () => {
    expect(relativeUntil(at(9 * 60_000), t0)).toBe('in 9 minutes');
    expect(relativeUntil(at(8 * 60_000 + 1), t0)).toBe('in 9 minutes');
    expect(relativeUntil(at(60_000), t0)).toBe('in 1 minute');
  });

  it('says hours', () => {
    expect(relativeUntil(at(2 * 3_600_000), t0)).toBe('in 2 hours');
    expect(relativeUntil(at(59 * 60_000 + 30_000), t0)).toBe('in 1 hour');
  });

  it('says days', () => {
    expect(relativeUntil(at(3 * 86_400_000), t0)).toBe('in 3 days');
    expect(relativeUntil(at(7 * 86_400_000), t0)).toBe('in 7 days');
    expect(relativeUntil(at(23.8 * 3_600_000), t0)).toBe('in 1 day');
  });

  it('says now when the moment has passed', () => {
    expect(relativeUntil(at(0), t0)).toBe('now');
    expect(relativeUntil(at(-5_000), t0)).toBe('now');
  });
});

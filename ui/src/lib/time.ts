// Dates and times for the timeline: day separators, message grouping and time formatting.
// Everything takes an explicit time zone (default: the runtime's) and `now`, so it is
// deterministic under test.

export interface TimelineMsg {
  id: string;
  authorId: string;
  createdAt: string /* ISO */;
  replyToId?: string | null;
}

export type TimelineItem<M> =
  | { kind: 'day'; key: string; label: string }
  | { kind: 'message'; key: string; msg: M; head: boolean };

export interface TimeOptions {
  /** IANA time zone, e.g. "Europe/London"; default: the runtime's. */
  timeZone?: string;
  /** BCP 47 locale; default 'en-GB'. */
  locale?: string;
}

/** Messages by the same author within this many milliseconds of the previous one are grouped. */
export const GROUP_WINDOW_MS = 7 * 60 * 1000;

const DEFAULT_LOCALE = 'en-GB';

// Intl.DateTimeFormat construction is slow; cache formatters by their options.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(locale: string, timeZone: string | undefined, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = `${locale}|${timeZone ?? ''}|${JSON.stringify(options)}`;
  let f = formatters.get(key);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat(locale, { ...options, timeZone });
    } catch {
      // Unknown locale or time zone: fall back rather than break the timeline.
      f = new Intl.DateTimeFormat(DEFAULT_LOCALE, options);
    }
    formatters.set(key, f);
  }
  return f;
}

function parse(iso: string): Date | null {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** The calendar day of `d` in `timeZone`, as "YYYY-MM-DD". */
export function dayKey(d: Date, timeZone?: string): string {
  const parts = formatter('en-US', timeZone, {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    calendar: 'gregory',
    numberingSystem: 'latn',
  }).formatToParts(d);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year').padStart(4, '0')}-${get('month')}-${get('day')}`;
}

/** The day before a "YYYY-MM-DD" key, by calendar arithmetic. */
function previousDayKey(key: string): string {
  const [y, m, d] = key.split('-').map(Number);
  const prev = new Date(Date.UTC(y, m - 1, d - 1));
  return prev.toISOString().slice(0, 10);
}

/** "Today", "Yesterday", or the full date such as "Monday, 30 November 2026". */
export function dayLabel(d: Date, opts: { now: Date; timeZone?: string; locale?: string }): string {
  const key = dayKey(d, opts.timeZone);
  const today = dayKey(opts.now, opts.timeZone);
  if (key === today) return 'Today';
  if (key === previousDayKey(today)) return 'Yesterday';
  return formatter(opts.locale ?? DEFAULT_LOCALE, opts.timeZone, {
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    year: 'numeric',
  }).format(d);
}

/**
 * The timeline for a list of messages in chronological order: a day separator before the
 * first message of each calendar day (in `timeZone`), and each message marked `head` when it
 * starts a new group (new author, more than 7 minutes after the previous message, a new day,
 * or a reply).
 */
export function groupTimeline<M extends TimelineMsg>(
  msgs: M[],
  opts: { now: Date; timeZone?: string; locale?: string },
): TimelineItem<M>[] {
  const items: TimelineItem<M>[] = [];
  let prevDay: string | null = null;
  let prev: { authorId: string; time: number } | null = null;
  for (const msg of msgs) {
    const date = parse(msg.createdAt);
    const day = date ? dayKey(date, opts.timeZone) : 'unknown';
    const newDay = day !== prevDay;
    if (newDay) {
      items.push({
        kind: 'day',
        key: `day-${day}`,
        label: date ? dayLabel(date, opts) : 'Unknown date',
      });
      prevDay = day;
    }
    const time = date ? date.getTime() : NaN;
    const gap = prev ? time - prev.time : NaN;
    const head =
      newDay ||
      prev === null ||
      prev.authorId !== msg.authorId ||
      !(gap >= 0 && gap <= GROUP_WINDOW_MS) ||
      (msg.replyToId !== undefined && msg.replyToId !== null && msg.replyToId !== '');
    items.push({ kind: 'message', key: msg.id, msg, head });
    prev = { authorId: msg.authorId, time };
  }
  return items;
}

/** The time of day as 24-hour "HH:MM", or '' for an invalid date. */
export function formatTime(iso: string, opts: TimeOptions = {}): string {
  const d = parse(iso);
  if (!d) return '';
  return formatter(opts.locale ?? DEFAULT_LOCALE, opts.timeZone, {
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).format(d);
}

/** Date and time for tooltips, e.g. "Monday, 30 November 2026 at 09:05", or '' if invalid. */
export function formatFull(iso: string, opts: TimeOptions = {}): string {
  const d = parse(iso);
  if (!d) return '';
  return formatter(opts.locale ?? DEFAULT_LOCALE, opts.timeZone, {
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).format(d);
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'always' });

/**
 * How long until `iso`, e.g. "in 45 seconds", "in 9 minutes", "in 2 hours", "in 3 days";
 * "now" once it has passed. Seconds and minutes round up (a timeout never ends earlier than
 * promised); hours and days round to the nearest.
 */
export function relativeUntil(iso: string, now: Date): string {
  const d = parse(iso);
  if (!d) return '';
  const ms = d.getTime() - now.getTime();
  if (!(ms > 0)) return 'now';
  const seconds = Math.ceil(ms / 1000);
  if (seconds < 60) return relative.format(seconds, 'second');
  const minutes = Math.ceil(ms / 60_000);
  if (minutes < 60) return relative.format(minutes, 'minute');
  const hours = Math.max(1, Math.round(ms / 3_600_000));
  if (hours < 24) return relative.format(hours, 'hour');
  const days = Math.max(1, Math.round(ms / 86_400_000));
  return relative.format(days, 'day');
}

import { formatFull, type TimeOptions } from './time';

/**
 * An audit entry's before or after value (JSON text from the server) in words: instants
 * (milliseconds since 1970) as dates, lists joined, objects as `field: value` pairs without
 * the empty ones, nothing as a dash. Text that is not JSON is shown as it is.
 */
export function auditValue(v: string | null, opts: TimeOptions = {}): string {
  if (v === null) return '—';
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    return v;
  }
  const words = (x: unknown): string => {
    if (x === null || x === undefined) return '—';
    // Positions, counts and seconds are small; instants since 2001 are above 1e12 ms.
    if (typeof x === 'number' && x > 1e12) return formatFull(new Date(x).toISOString(), opts);
    if (Array.isArray(x)) return x.map(words).join(', ') || 'none';
    if (typeof x === 'object') {
      return Object.entries(x as Record<string, unknown>)
        .filter(([, y]) => y !== null)
        .map(([k, y]) => `${k}: ${words(y)}`)
        .join('; ');
    }
    return String(x);
  };
  return words(parsed);
}

import { describe, expect, it } from 'vitest';
import { auditValue } from './audit';

const utc = { locale: 'en-GB', timeZone: 'UTC' };

describe('audit values in words', () => {
  it('shows nothing as a dash', () => {
    expect(auditValue(null)).toBe('—');
    expect(auditValue('null')).toBe('—');
  });

  it('shows an instant as a date, and small numbers as numbers', () => {
    const until = Date.UTC(2026, 11, 2, 9, 30);
    expect(auditValue(String(until), utc)).toContain('2 December 2026');
    expect(auditValue('30', utc)).toBe('30');
  });

  it('shows objects as fields without the empty ones, and lists joined', () => {
    expect(auditValue('{"name":"general","topic":null,"position":2}')).toBe('name: general; position: 2');
    expect(auditValue('{"allow":["SEND_MESSAGES","ATTACH_FILES"],"deny":[]}')).toBe(
      'allow: SEND_MESSAGES, ATTACH_FILES; deny: none',
    );
    expect(auditValue('true')).toBe('true');
  });

  it('shows text that is not JSON as it is', () => {
    expect(auditValue('not json {')).toBe('not json {');
  });
});

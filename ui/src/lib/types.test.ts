import { describe, expect, it } from 'vitest';
import { hubOf, isDm, parseUserIds } from './types';

describe('hubOf', () => {
  it('is the part of a user id after its first colon', () => {
    expect(hubOf('@bob:hub-b.test')).toBe('hub-b.test');
    expect(hubOf('@ann:127.0.0.1:8080')).toBe('127.0.0.1:8080');
  });
});

describe('parseUserIds', () => {
  it('takes ids separated by spaces or commas, once each', () => {
    expect(parseUserIds(' @bob:hub.test, @cy:other.test  @bob:hub.test', 'hub.test')).toEqual(['@bob:hub.test', '@cy:other.test']);
  });

  it('puts a bare handle on the viewer’s own hub', () => {
    expect(parseUserIds('bob @cy', 'hub.test')).toEqual(['@bob:hub.test', '@cy:hub.test']);
    expect(parseUserIds('  ', 'hub.test')).toEqual([]);
  });
});

describe('isDm', () => {
  it('is a DM or a group DM, not a guild channel', () => {
    expect(isDm({ kind: 'DM' })).toBe(true);
    expect(isDm({ kind: 'GROUP_DM' })).toBe(true);
    expect(isDm({ kind: 'TEXT' })).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { hubOf } from './types';

describe('hubOf', () => {
  it('is the part of a user id after its first colon', () => {
    expect(hubOf('@bob:hub-b.test')).toBe('hub-b.test');
    expect(hubOf('@ann:127.0.0.1:8080')).toBe('127.0.0.1:8080');
  });
});

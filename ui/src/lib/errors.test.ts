import { describe, expect, it } from 'vitest';
import { ApiError, describeError, fromGraphQLErrors } from './errors';

const gql = (code: string, message: string, extra: Record<string, unknown> = {}) =>
  fromGraphQLErrors([{ message, extensions: { code, ...extra } }]);

describe('ApiError', () => {
  it('is an Error with a code and an optional retryAfter', () => {
    const e = new ApiError('RATE_LIMITED', 'Slow down', 3);
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(ApiError);
    expect(e.name).toBe('ApiError');
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.message).toBe('Slow down');
    expect(e.retryAfter).toBe(3);
    expect(new ApiError('NOT_FOUND', 'x').retryAfter).toBeUndefined();
  });
});

describe('fromGraphQLErrors', () => {
  it('takes the code, message and retryAfter of the error', () => {
    const e = gql('RATE_LIMITED', 'Too many messages', { retryAfter: 2.5 });
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.message).toBe('Too many messages');
    expect(e.retryAfter).toBe(2.5);
  });

  it('defaults a missing code to INTERNAL', () => {
    const e = fromGraphQLErrors([{ message: 'Database unavailable' }]);
    expect(e.code).toBe('INTERNAL');
    expect(e.retryAfter).toBeUndefined();
  });

  it('prefers the error that matters most when there are several', () => {
    const e = fromGraphQLErrors([
      { message: 'Channel not found', extensions: { code: 'NOT_FOUND' } },
      { message: 'Not logged in', extensions: { code: 'UNAUTHENTICATED' } },
    ]);
    expect(e.code).toBe('UNAUTHENTICATED');
    expect(fromGraphQLErrors([{ message: 'a b', extensions: { code: 'CONFLICT' } }, { message: 'c d' }]).code).toBe(
      'CONFLICT',
    );
  });

  it('copes with an empty list and a numeric-string retryAfter', () => {
    expect(fromGraphQLErrors([]).code).toBe('INTERNAL');
    expect(gql('RATE_LIMITED', 'x', { retryAfter: '4' }).retryAfter).toBe(4);
    expect(gql('RATE_LIMITED', 'x', { retryAfter: 'soon' }).retryAfter).toBeUndefined();
  });
});

describe('describeError', () => {
  it('asks to log in again when the session has ended', () => {
    expect(describeError(gql('UNAUTHENTICATED', 'Session expired'))).toBe('Your session has ended. Please log in again.');
  });

  it('says how long to wait when rate limited, rounded up and at least 1 second', () => {
    expect(describeError(gql('RATE_LIMITED', 'Slow down', { retryAfter: 4.2 }))).toBe(
      "You're doing that too fast. Try again in 5 seconds.",
    );
    expect(describeError(gql('RATE_LIMITED', 'Slow down', { retryAfter: 0.1 }))).toBe(
      "You're doing that too fast. Try again in 1 second.",
    );
    expect(describeError(gql('RATE_LIMITED', 'Slow down', { retryAfter: 0 }))).toBe(
      "You're doing that too fast. Try again in 1 second.",
    );
    expect(describeError(gql('RATE_LIMITED', 'Slow down'))).toBe("You're doing that too fast. Try again in a moment.");
  });

  it('explains a permission failure with the server’s reason', () => {
    expect(describeError(gql('FORBIDDEN', 'Only the owner can delete the server'))).toBe(
      "You don't have permission to do that: only the owner can delete the server.",
    );
    expect(describeError(gql('FORBIDDEN', 'You need the Manage Channels permission.'))).toBe(
      'You need the Manage Channels permission.',
    );
    expect(describeError(gql('FORBIDDEN', 'FORBIDDEN'))).toBe("You don't have permission to do that.");
    expect(describeError(gql('FORBIDDEN', 'API access is disabled'))).toBe(
      "You don't have permission to do that: API access is disabled.",
    );
  });

  it('uses the server’s sentence for not found, conflict and invalid input, tidied', () => {
    expect(describeError(gql('NOT_FOUND', 'channel #general no longer exists'))).toBe(
      'Channel #general no longer exists.',
    );
    expect(describeError(gql('CONFLICT', 'That handle is already taken.'))).toBe('That handle is already taken.');
    expect(describeError(gql('INVALID_INPUT', 'Name must be 1 to 100 characters!'))).toBe(
      'Name must be 1 to 100 characters!',
    );
    expect(describeError(gql('CONFLICT', 'CONFLICT: a role with that name exists'))).toBe(
      'A role with that name exists.',
    );
  });

  it('falls back to a sentence per code when the server message is not a sentence', () => {
    for (const code of ['NOT_FOUND', 'CONFLICT', 'INVALID_INPUT', 'SOMETHING_NEW']) {
      for (const message of ['', code, 'NOT_FOUND', 'Error: boom\n    at f (x.js:1:2)', 'TypeError: x is undefined']) {
        const s = describeError(new ApiError(code, message));
        expect(s).toMatch(/^[A-Z].*[.!?]$/);
        expect(s).not.toContain(code);
        expect(s).not.toMatch(/ at |Error/);
      }
    }
  });

  it('says the server cannot be reached for a TypeError or a failed fetch', () => {
    const msg = "Can't reach the server. Check your connection and try again.";
    expect(describeError(new TypeError('Failed to fetch'))).toBe(msg);
    expect(describeError(new TypeError('NetworkError when attempting to fetch resource.'))).toBe(msg);
    expect(describeError(new Error('Failed to fetch'))).toBe(msg);
    expect(describeError({ code: 1006, reason: '', wasClean: false })).toBe(msg);
  });

  it('reports timeouts and aborts', () => {
    const abort = new Error('The operation was aborted.');
    abort.name = 'AbortError';
    expect(describeError(abort)).toBe('The server took too long to answer. Please try again.');
  });

  it('accepts raw GraphQL error arrays and responses', () => {
    const errors = [{ message: 'Not logged in', extensions: { code: 'UNAUTHENTICATED' } }];
    expect(describeError(errors)).toBe('Your session has ended. Please log in again.');
    expect(describeError({ errors })).toBe('Your session has ended. Please log in again.');
    expect(describeError({ message: 'the invite has expired', extensions: { code: 'NOT_FOUND' } })).toBe(
      'The invite has expired.',
    );
  });

  it('never shows a stack, a code or a plain Error’s internals for unknown failures', () => {
    const generic = 'Something went wrong. Please try again.';
    expect(describeError(new Error('Cannot read properties of undefined (reading "x")'))).toBe(generic);
    expect(describeError('INTERNAL')).toBe(generic);
    expect(describeError(undefined)).toBe(generic);
    expect(describeError(null)).toBe(generic);
    expect(describeError(42)).toBe(generic);
    expect(describeError({})).toBe(generic);
  });

  it('uses an internal error’s message only when it is a sentence', () => {
    expect(describeError(gql('INTERNAL', 'the database is busy, try again shortly'))).toBe(
      'The database is busy, try again shortly.',
    );
    expect(describeError(gql('INTERNAL', 'INTERNAL_SERVER_ERROR'))).toBe('Something went wrong. Please try again.');
  });

  it('never throws, even on hostile input', () => {
    const hostile = {
      get name(): string {
        throw new Error('boom');
      },
    };
    expect(describeError(hostile)).toBe('Something went wrong. Please try again.');
  });
});

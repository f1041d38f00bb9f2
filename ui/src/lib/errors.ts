// Turning failures into sentences a person understands.
//
// The server answers GraphQL errors as
//   { message: "...", extensions: { code: "FORBIDDEN" | "UNAUTHENTICATED" | "NOT_FOUND" |
//     "CONFLICT" | "INVALID_INPUT" | "RATE_LIMITED", retryAfter?: seconds } }
// and its message is usually already a human sentence naming what was wrong.

export class ApiError extends Error {
  code: string;
  /** Seconds to wait before retrying (RATE_LIMITED). */
  retryAfter?: number;

  constructor(code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

export type GraphQLErrorLike = { message: string; extensions?: Record<string, unknown> };

// When a response carries several errors, the one that matters most to the person wins.
const PRIORITY = ['UNAUTHENTICATED', 'RATE_LIMITED', 'FORBIDDEN'];

/** The ApiError for a GraphQL `errors` array. */
export function fromGraphQLErrors(errors: GraphQLErrorLike[]): ApiError {
  const list = Array.isArray(errors) ? errors.filter((e) => e && typeof e === 'object') : [];
  if (list.length === 0) return new ApiError('INTERNAL', '');
  const codeOf = (e: GraphQLErrorLike) => {
    const c = e.extensions?.code;
    return typeof c === 'string' && c !== '' ? c : 'INTERNAL';
  };
  let chosen = list[0];
  for (const code of PRIORITY) {
    const hit = list.find((e) => codeOf(e) === code);
    if (hit) {
      chosen = hit;
      break;
    }
  }
  const raw = chosen.extensions?.retryAfter;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  const retryAfter = Number.isFinite(n) && n >= 0 ? n : undefined;
  const message = typeof chosen.message === 'string' ? chosen.message : '';
  return new ApiError(codeOf(chosen), message, retryAfter);
}

const CONNECTION = "Can't reach the server. Check your connection and try again.";
const GENERIC = 'Something went wrong. Please try again.';
const TIMEOUT = 'The server took too long to answer. Please try again.';

/** A sentence describing `e` for a person: never a bare code or a stack trace. */
export function describeError(e: unknown): string {
  try {
    return describe(e);
  } catch {
    return GENERIC;
  }
}

function describe(e: unknown): string {
  if (e instanceof ApiError) return describeApiError(e);
  if (Array.isArray(e)) return describeApiError(fromGraphQLErrors(e as GraphQLErrorLike[]));
  if (e !== null && typeof e === 'object') {
    const o = e as Record<string, unknown>;
    // A GraphQL response ({ errors: [...] }) or a single GraphQL error.
    if (Array.isArray(o.errors)) return describeApiError(fromGraphQLErrors(o.errors as GraphQLErrorLike[]));
    if (o.name === 'ApiError' && typeof o.code === 'string') {
      return describeApiError(
        new ApiError(o.code, String(o.message ?? ''), typeof o.retryAfter === 'number' ? o.retryAfter : undefined),
      );
    }
    if (!(e instanceof Error) && typeof o.message === 'string' && o.extensions && typeof o.extensions === 'object') {
      return describeApiError(fromGraphQLErrors([o as GraphQLErrorLike]));
    }
    if (o.name === 'AbortError' || o.name === 'TimeoutError') return TIMEOUT;
    if (e instanceof TypeError) return CONNECTION; // fetch() rejects with a TypeError when offline
    if (e instanceof Error && /failed to fetch|networkerror|network request failed|load failed|econnrefused|socket/i.test(e.message)) {
      return CONNECTION;
    }
    // A WebSocket close event (graphql-ws reports these when the socket drops).
    if (typeof o.code === 'number' && 'reason' in o && 'wasClean' in o) return CONNECTION;
  }
  return GENERIC;
}

function describeApiError(e: ApiError): string {
  const message = sentence(e.message);
  switch (e.code) {
    case 'UNAUTHENTICATED':
      return 'Your session has ended. Please log in again.';
    case 'RATE_LIMITED': {
      if (e.retryAfter === undefined || !Number.isFinite(e.retryAfter)) {
        return "You're doing that too fast. Try again in a moment.";
      }
      const n = Math.max(1, Math.ceil(e.retryAfter));
      return `You're doing that too fast. Try again in ${n} ${n === 1 ? 'second' : 'seconds'}.`;
    }
    case 'FORBIDDEN':
      if (message === null) return "You don't have permission to do that.";
      if (/\b(permission|not allowed|forbidden)\b/i.test(message)) return message;
      return `You don't have permission to do that: ${lowerFirst(message)}`;
    case 'NOT_FOUND':
      return message ?? "That doesn't exist any more. It may have been deleted.";
    case 'CONFLICT':
      return message ?? 'That clashes with something that already exists.';
    case 'INVALID_INPUT':
      return message ?? "Some of what you entered isn't valid. Please check it and try again.";
    default:
      return message ?? GENERIC;
  }
}

/**
 * The server's message tidied into a sentence (capitalised, ending in a full stop), or null
 * when it is not a real sentence: empty, a bare code such as "NOT_FOUND", or a stack trace.
 */
function sentence(raw: string): string | null {
  if (typeof raw !== 'string') return null;
  const firstLine = raw
    .trim()
    .split('\n')[0]
    .replace(/\s+/g, ' ')
    .replace(/^[A-Z][A-Z0-9_]+: /, '') // "FORBIDDEN: only owners can…"
    .trim();
  if (firstLine.length < 3 || firstLine.length > 300) return null;
  if (!/\p{L}/u.test(firstLine) || !firstLine.includes(' ')) return null; // "NOT_FOUND", "error"
  if (/^\w*(Error|Exception)\b:?/.test(firstLine) || /\n\s+at /.test(raw) || /\bat .+:\d+:\d+/.test(raw)) return null;
  let s = firstLine[0].toUpperCase() + firstLine.slice(1);
  if (!/[.!?]$/.test(s)) s += '.';
  return s;
}

/** "Only owners can…" → "only owners can…", but "API keys…" stays. */
function lowerFirst(s: string): string {
  if (/^\p{Lu}\p{Ll}/u.test(s) && !/^I\b/.test(s)) return s[0].toLowerCase() + s.slice(1);
  return s;
}

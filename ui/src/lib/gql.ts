// The client's one door to the server: GraphQL over HTTP for queries and mutations, and
// graphql-ws for subscriptions. Each call takes one of the typed documents in generated.ts,
// so its variables and its answer have the schema's types. Errors become `ApiError`s whose
// text a person can read.
import { createClient, type Client } from 'graphql-ws';
import { ApiError, fromGraphQLErrors } from './errors';
import type { TypedDocumentString } from './generated';

/** An operation's variables: optional when it has none that are required. */
type Variables<V> = {} extends V ? [variables?: V] : [variables: V];

let token: string | null = localStorage.getItem('og.token');
let ws: Client | null = null;
const onLogout: Array<() => void> = [];

export function getToken(): string | null {
  return token;
}

export function setToken(t: string | null): void {
  token = t;
  if (t) localStorage.setItem('og.token', t);
  else localStorage.removeItem('og.token');
  ws?.dispose();
  ws = null;
}

/** Called when the server says the session is over (expired, revoked, logged out elsewhere). */
export function whenLoggedOut(f: () => void): void {
  onLogout.push(f);
}

function sessionEnded(): void {
  setToken(null);
  for (const f of onLogout) f();
}

export async function gql<T, V>(document: TypedDocumentString<T, V>, ...[variables]: Variables<V>): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query: document.toString(), variables: variables ?? {} }) });
  } catch {
    throw new TypeError('Failed to fetch');
  }
  let body: { data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
  try {
    body = await res.json();
  } catch {
    throw new ApiError('SERVER', `The server answered ${res.status} without a readable body.`);
  }
  if (body.errors?.length) {
    const err = fromGraphQLErrors(body.errors);
    if (err.code === 'UNAUTHENTICATED' && token) sessionEnded();
    throw err;
  }
  return body.data as T;
}

function client(): Client {
  if (ws) return ws;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
  ws = createClient({
    url,
    connectionParams: () => ({ authorization: `Bearer ${token}` }),
    lazy: true,
    retryAttempts: Infinity,
    shouldRetry: (e: unknown) => {
      const code = (e as CloseEvent | undefined)?.code;
      if (code === 4401) {
        sessionEnded();
        return false;
      }
      return true;
    },
  });
  return ws;
}

export type Unsubscribe = () => void;

/**
 * Follows a subscription. `next` gets each payload's data; `error` gets refusals (an event
 * the viewer may no longer see ends the subscription with FORBIDDEN).
 */
export function subscribe<T, V extends Record<string, unknown>>(
  document: TypedDocumentString<T, V>,
  variables: V,
  next: (data: T) => void,
  error?: (e: ApiError) => void,
): Unsubscribe {
  return client().subscribe<T>(
    { query: document.toString(), variables },
    {
      next: (msg) => {
        if (msg.errors?.length) error?.(fromGraphQLErrors(msg.errors as any));
        else if (msg.data) next(msg.data as T);
      },
      error: (e) => {
        if (Array.isArray(e)) error?.(fromGraphQLErrors(e as any));
      },
      complete: () => {},
    },
  );
}

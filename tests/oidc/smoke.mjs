// Smoke test for provider.mjs: starts it on a free port and runs the whole
// authorization-code + PKCE flow over plain HTTP with a cookie jar, printing
// every request, status, Location and cookie set along the way.
//
//   node smoke.mjs            (from tests/oidc, after `npm ci`)
//
// Exits 0 and prints "1 passed, 0 failed" when everything checks out.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const CLIENT_ID = 'openguild-test';
const CLIENT_SECRET = 'test-secret-0123456789';
const REDIRECT_URI = 'http://127.0.0.1:9/cb';
const here = dirname(fileURLToPath(import.meta.url));

function startProvider() {
  const child = spawn(process.execPath, [join(here, 'provider.mjs')], {
    env: {
      ...process.env,
      OIDC_PORT: '0',
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      OIDC_REDIRECT_URIS: `${REDIRECT_URI},http://127.0.0.1:9/other`,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('provider did not become ready')), 15000);
    child.once('exit', (code) => reject(new Error(`provider exited early with ${code}`)));
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const match = /^oidc provider ready on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve({ child, base: match[1] });
      }
    });
  });
}

// Minimal cookie jar honouring the Path attribute (all cookies are host-only).
class CookieJar {
  cookies = new Map(); // `${path}\0${name}` -> { name, value, path }

  store(url, response) {
    const names = [];
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key, val = ''] = attribute.split('=');
        if (key.toLowerCase() === 'path') path = val;
        if (key.toLowerCase() === 'expires' && Date.parse(val) <= Date.now()) expired = true;
        if (key.toLowerCase() === 'max-age' && Number(val) <= 0) expired = true;
      }
      const key = `${path}\0${name}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path });
      names.push(`${name}${expired ? ' (cleared)' : ''} [path=${path}]`);
    }
    return names;
  }

  header(url) {
    const { pathname } = new URL(url);
    return [...this.cookies.values()]
      .filter(({ path }) => pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }
}

function b64url(buffer) {
  return Buffer.from(buffer).toString('base64url');
}

function decodeJwt(token) {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url')),
    payload: JSON.parse(Buffer.from(payload, 'base64url')),
  };
}

// Follows the authorization request through the interaction redirects up to
// the redirect to REDIRECT_URI, without fetching that one.
async function authorizeFlow(discovery, jar, hint, verbose) {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));

  const authorize = new URL(discovery.authorization_endpoint);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(hint === undefined ? {} : { login_hint: hint }),
  }).toString();

  let url = authorize.href;
  let callback;
  let hops = 0;
  for (let hop = 1; hop <= 10; hop += 1) {
    hops = hop;
    const cookie = jar.header(url);
    const response = await fetch(url, {
      redirect: 'manual',
      headers: cookie ? { cookie } : {},
    });
    const set = jar.store(url, response);
    const location = response.headers.get('location');
    const shown = new URL(url);
    if (verbose) console.log(`${hop}. GET ${shown.pathname}${hop === 1 ? '?…' : ''} -> ${response.status}`
      + ` Location: ${location}`);
    if (verbose) console.log(`     sent cookies: ${cookie ? cookie.split('; ').map((c) => c.split('=')[0]).join(', ') : '(none)'}`);
    if (verbose && set.length) console.log(`     set: ${set.join(', ')}`);
    if (![302, 303].includes(response.status)) console.error(await response.text());
    else await response.arrayBuffer();
    assert.ok([302, 303].includes(response.status), `hop ${hop}: expected a redirect, got ${response.status}`);
    const next = new URL(location, url);
    if (next.href.startsWith(REDIRECT_URI)) {
      callback = next;
      break;
    }
    url = next.href;
  }
  assert.ok(callback, 'never reached the redirect_uri');
  assert.equal(callback.searchParams.get('state'), state);
  assert.equal(callback.searchParams.get('iss'), discovery.issuer);
  const code = callback.searchParams.get('code');
  assert.ok(code, `no code in ${callback.href}`);

  return { code, verifier, nonce, authorize, hops };
}

async function run(base) {
  const discovery = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
  assert.equal(discovery.issuer, base);
  console.log(`discovery: authorization_endpoint=${discovery.authorization_endpoint}`);
  console.log(`           token_endpoint=${discovery.token_endpoint}`);
  console.log(`           jwks_uri=${discovery.jwks_uri}`);

  const jwks = await (await fetch(discovery.jwks_uri)).json();
  assert.equal(jwks.keys.length, 1);
  assert.equal(jwks.keys[0].kty, 'RSA');
  assert.ok(jwks.keys[0].kid);
  assert.equal(jwks.keys[0].d, undefined, 'private key part must not be published');

  const jar = new CookieJar();
  const { code, verifier, nonce, authorize } = await authorizeFlow(discovery, jar, 'bob', true);

  const tokenResponse = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(
        `${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`,
      ).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    }),
  });
  const tokens = await tokenResponse.json();
  console.log(`token: POST ${new URL(discovery.token_endpoint).pathname} -> ${tokenResponse.status}`
    + ` keys=${Object.keys(tokens).join(',')}`);
  assert.equal(tokenResponse.status, 200, JSON.stringify(tokens));
  assert.equal(tokens.token_type, 'Bearer');

  const { header, payload } = decodeJwt(tokens.id_token);
  console.log(`id_token header: ${JSON.stringify(header)}`);
  console.log(`id_token payload: ${JSON.stringify(payload)}`);
  assert.equal(header.alg, 'RS256');
  assert.equal(header.kid, jwks.keys[0].kid);
  assert.equal(payload.iss, base);
  assert.equal(payload.aud, CLIENT_ID);
  assert.equal(payload.sub, 'bob');
  assert.equal(payload.nonce, nonce);
  assert.equal(payload.preferred_username, 'bob');
  assert.equal(payload.email, 'bob@example.test');
  assert.equal(payload.name, 'Bob');
  assert.ok(payload.exp > payload.iat);

  const userinfo = await (await fetch(discovery.userinfo_endpoint, {
    headers: { authorization: `Bearer ${tokens.access_token}` },
  })).json();
  console.log(`userinfo: ${JSON.stringify(userinfo)}`);
  assert.equal(userinfo.sub, 'bob');
  assert.equal(userinfo.preferred_username, 'bob');

  // client_secret_post works for the refresh_token grant.
  assert.ok(tokens.refresh_token, 'expected a refresh token');
  const refreshed = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    }),
  });
  assert.equal(refreshed.status, 200, JSON.stringify(await refreshed.clone().json()));
  console.log('refresh_token grant with client_secret_post -> 200');

  // The code is single use (a replay also revokes the tokens it issued).
  const replay = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    }),
  });
  assert.equal(replay.status, 400);
  assert.equal((await replay.json()).error, 'invalid_grant');

  // Without PKCE the request is refused (redirected back with an error).
  authorize.searchParams.delete('code_challenge');
  authorize.searchParams.delete('code_challenge_method');
  const noPkce = await fetch(authorize, { redirect: 'manual' });
  const errorLocation = new URL(noPkce.headers.get('location'));
  console.log(`no PKCE: ${noPkce.status} -> error=${errorLocation.searchParams.get('error')}`);
  assert.equal(errorLocation.searchParams.get('error'), 'invalid_request');

  // Reusing the cookie jar with another login_hint signs in that account;
  // a fresh jar without login_hint gets the default account, alice.
  for (const [label, flowJar, hint, expected] of [
    ['same jar, login_hint=carol', jar, 'carol', 'carol'],
    ['same jar, login_hint=carol again', jar, 'carol', 'carol'],
    ['fresh jar, no login_hint', new CookieJar(), undefined, 'alice'],
  ]) {
    const flow = await authorizeFlow(discovery, flowJar, hint, false);
    const response = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: flow.code,
        redirect_uri: REDIRECT_URI,
        code_verifier: flow.verifier,
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
      }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    const { payload: claims } = decodeJwt(body.id_token);
    console.log(`${label}: ${flow.hops} requests, sub=${claims.sub} name=${claims.name} email=${claims.email}`);
    assert.equal(claims.sub, expected);
    assert.equal(claims.nonce, flow.nonce);
  }
}

const { child, base } = await startProvider();
let failed = false;
try {
  await run(base);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  child.removeAllListeners('exit');
  child.kill('SIGTERM');
}
console.log(failed ? '0 passed, 1 failed' : '1 passed, 0 failed');
process.exitCode = failed ? 1 : 0;

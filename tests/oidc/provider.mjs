// Headless OpenID Connect provider for OpenGuild end-to-end tests.
//
// Starts one `oidc-provider` instance with a single confidential client and
// no login UI: every interaction (login, consent) is completed automatically
// by a small handler on `/interaction/:uid`, so a test can run the whole
// authorization-code + PKCE flow with plain HTTP requests and a cookie jar.
//
// Environment:
//   OIDC_PORT           port on 127.0.0.1 to listen on (0 = pick a free one)
//   OIDC_ISSUER         issuer URL (default http://127.0.0.1:<actual port>)
//   OIDC_CLIENT_ID      client id
//   OIDC_CLIENT_SECRET  client secret
//   OIDC_REDIRECT_URIS  comma-separated redirect URIs of the client
//
// Prints exactly one line to stdout once listening:
//   oidc provider ready on http://127.0.0.1:<port>
// Everything else (warnings, errors) goes to stderr. Exits on SIGTERM/SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

// stdout carries only the ready line; oidc-provider prints its NOTICEs with
// console.info, so send those (and any console.log) to stderr.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

function fail(message) {
  process.stderr.write(`oidc provider: ${message}\n`);
  process.exit(2);
}

function requiredEnv(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    fail(`environment variable ${name} is required`);
  }
  return value;
}

const portText = process.env.OIDC_PORT ?? '0';
const requestedPort = Number.parseInt(portText, 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535
  || String(requestedPort) !== portText.trim()) {
  fail(`OIDC_PORT must be a port number (0 for any free port), got ${JSON.stringify(portText)}`);
}

const clientId = requiredEnv('OIDC_CLIENT_ID');
const clientSecret = requiredEnv('OIDC_CLIENT_SECRET');
const redirectUris = requiredEnv('OIDC_REDIRECT_URIS')
  .split(',')
  .map((uri) => uri.trim())
  .filter((uri) => uri !== '');
if (redirectUris.length === 0) {
  fail('OIDC_REDIRECT_URIS must name at least one redirect URI');
}

const HOST = '127.0.0.1';
const INTERACTION_PREFIX = '/interaction/';
const DEFAULT_ACCOUNT = 'alice';
const SCOPES = 'openid profile email';

// A fresh RS256 signing key per run, with a key id so relying parties can
// pick it out of the JWKS.
function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk,
    kid: `test-${randomBytes(8).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

function displayName(accountId) {
  return accountId.charAt(0).toUpperCase() + accountId.slice(1);
}

// Any account id is a valid account; claims are derived from the id.
async function findAccount(_ctx, accountId) {
  return {
    accountId,
    async claims() {
      return {
        sub: accountId,
        preferred_username: accountId,
        name: displayName(accountId),
        email: `${accountId}@example.test`,
        email_verified: true,
      };
    },
  };
}

// The default policy, plus: a login_hint naming someone other than the
// account already signed in (cookie jar reused across logins) asks for a new
// login, so `login_hint` always decides who the user is.
function interactionPolicyWithHint() {
  const { Check, base } = interactionPolicy;
  const policy = base();
  policy.get('login').checks.push(new Check(
    'login_hint_mismatch',
    'login_hint names a different account than the current session',
    'login_required',
    (ctx) => {
      const hint = ctx.oidc.params.login_hint;
      if (typeof hint !== 'string' || hint.trim() === '') {
        return Check.NO_NEED_TO_PROMPT;
      }
      return ctx.oidc.session.accountId === hint.trim()
        ? Check.NO_NEED_TO_PROMPT
        : Check.REQUEST_PROMPT;
    },
  ));
  return policy;
}

function configuration() {
  return {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        // A client has one registered method, but oidc-provider accepts
        // client_secret_post as well for clients registered with
        // client_secret_basic (and vice versa).
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [signingKey()] },
    cookies: {
      // Prefixed so they cannot clash with the application's own cookies in a
      // shared jar (cookie jars ignore the port: both servers are 127.0.0.1).
      names: {
        session: 'op_session',
        interaction: 'op_interaction',
        resume: 'op_interaction_resume',
      },
      keys: [randomBytes(32).toString('base64url'), randomBytes(32).toString('base64url')],
    },
    findAccount,
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    },
    // Put the scope-derived claims (preferred_username, name, email) into the
    // ID token too, not only into the userinfo response.
    conformIdTokenClaims: false,
    // Every authorization request must carry an S256 code_challenge.
    pkce: {
      required: () => true,
    },
    // Explicit lifetimes (seconds); also keeps oidc-provider's NOTICEs quiet.
    ttl: {
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      AccessToken: 3600,
      IdToken: 3600,
      RefreshToken: 86400,
    },
    // Always hand out a refresh token (no offline_access scope needed).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: {
      policy: interactionPolicyWithHint(),
      url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}`,
    },
    // Show the real reason instead of a generic page when something fails.
    renderError: async (ctx, out, error) => {
      ctx.type = 'application/json';
      ctx.body = out;
      if (!(error instanceof errors.OIDCProviderError)) {
        process.stderr.write(`oidc provider error: ${error?.stack ?? error}\n`);
      }
    },
  };
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.setHeader('Cache-Control', 'no-store');
  res.end(text);
}

// Completes whichever prompt the interaction is waiting on and answers with a
// 303 redirect back to the provider's resume endpoint (/auth/<uid>).
async function finishInteraction(provider, req, res) {
  const interaction = await provider.interactionDetails(req, res);
  const { prompt, params } = interaction;

  switch (prompt.name) {
    case 'login': {
      const hint = typeof params.login_hint === 'string' ? params.login_hint.trim() : '';
      const accountId = hint || DEFAULT_ACCOUNT;
      const current = interaction.session;
      if (current?.accountId && current.accountId !== accountId) {
        // Someone else is signed in (reused cookie jar). oidc-provider would
        // answer an account switch with an auto-submitting logout form;
        // drop the old session instead so the flow stays plain redirects.
        const stale = current.cookie ? await provider.Session.find(current.cookie) : undefined;
        if (stale) {
          await stale.destroy();
        }
        interaction.session = undefined;
        interaction.accountId = undefined;
        await interaction.save(interaction.exp - Math.floor(Date.now() / 1000));
      }
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    case 'consent': {
      const { details } = prompt;
      const grant = interaction.grantId
        ? await provider.Grant.find(interaction.grantId)
        : new provider.Grant({
          accountId: interaction.session.accountId,
          clientId: params.client_id,
        });
      if (!grant) {
        throw new Error(`grant ${interaction.grantId} of interaction ${interaction.uid} not found`);
      }

      // Grant what was asked for (at least openid profile email).
      grant.addOIDCScope(SCOPES);
      if (details.missingOIDCScope) {
        grant.addOIDCScope(details.missingOIDCScope.join(' '));
      }
      if (details.missingOIDCClaims) {
        grant.addOIDCClaims(details.missingOIDCClaims);
      }
      if (details.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(details.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();

      await provider.interactionFinished(
        req,
        res,
        { consent: { grantId } },
        { mergeWithLastSubmission: true },
      );
      return;
    }
    default:
      await provider.interactionFinished(
        req,
        res,
        {
          error: 'access_denied',
          error_description: `test provider cannot complete prompt ${prompt.name}`,
        },
        { mergeWithLastSubmission: false },
      );
  }
}

async function main() {
  // Bind first so that port 0 resolves to a real port before the issuer is
  // fixed; requests arriving before the provider exists get a 503.
  let handler = (_req, res) => sendJson(res, 503, { error: 'starting' });
  const server = createServer((req, res) => handler(req, res));

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(requestedPort, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address();
  const base = `http://${HOST}:${port}`;
  const issuer = process.env.OIDC_ISSUER || base;

  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, error) => {
    process.stderr.write(`oidc provider server_error: ${error?.stack ?? error}\n`);
  });
  const callback = provider.callback();

  handler = (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith(INTERACTION_PREFIX) && (req.method === 'GET' || req.method === 'POST')) {
      finishInteraction(provider, req, res).catch((error) => {
        process.stderr.write(`oidc provider interaction failed: ${error?.stack ?? error}\n`);
        if (!res.headersSent) {
          const status = error instanceof errors.OIDCProviderError ? error.statusCode : 500;
          sendJson(res, status, {
            error: error?.error ?? 'server_error',
            error_description: error?.error_description ?? String(error?.message ?? error),
          });
        } else {
          res.end();
        }
      });
      return;
    }
    callback(req, res);
  };

  // All state is in memory: nothing to flush, so stop at once.
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(`oidc provider ready on ${base}\n`);
}

main().catch((error) => {
  process.stderr.write(`oidc provider failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});

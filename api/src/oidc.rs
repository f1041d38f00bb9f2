//! Single sign-on with OpenID Connect providers (the `openidconnect` crate): discovery, the
//! authorization-code flow with PKCE, `state` and `nonce` checked, issuer and audience
//! validated, signing algorithms pinned to asymmetric ones (never `none`, never HS* with the
//! client secret), and the provider's keys fetched again when a token names an unknown key —
//! at most once a minute per provider, so random key ids cannot make us flood it.
//!
//! A provider's subject maps to one user forever: the hub stream links the external id
//! `oidc:<issuer> <subject>` to the user. The first login creates nothing until the person
//! picks a handle (`completeSignup`); later logins open a session directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::now;
use crate::commands::random16;
use crate::errors::ApiError;
use crate::{Api, AppState};

/// One configured provider (`[api.oidc.NAME]`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Shown on the login button.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[secret]")
            .field("display_name", &self.display_name)
            .field("scopes", &self.scopes)
            .finish()
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

/// How long a started login may take, and a signup may wait for its handle.
const PENDING: Duration = Duration::from_secs(600);
/// Logins in progress on one node at most (each is kept up to `PENDING`).
const MAX_PENDING: usize = 10_000;
/// At most one key refetch per provider per this long.
const REFETCH_EVERY: Duration = Duration::from_secs(60);

struct Pending {
    provider: String,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    return_to: String,
    /// A Matrix client's login (`/login/sso/redirect`): where to send its `loginToken`.
    matrix: Option<String>,
    at: Instant,
}

/// A first login waiting for its handle.
#[derive(Clone)]
pub struct Signup {
    pub external_id: String,
    pub suggested: Option<String>,
    pub display_name: Option<String>,
    at: Instant,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// Every provider's state on this node.
#[derive(Default)]
pub struct Oidc {
    pub providers: BTreeMap<String, ProviderSettings>,
    discovered: tokio::sync::Mutex<HashMap<String, Discovered>>,
    pending: Mutex<HashMap<String, Pending>>,
    signups: Mutex<HashMap<String, Signup>>,
    /// Matrix login tokens (`m.login.token`): each names the session it hands over, once.
    login_tokens: Mutex<HashMap<String, (String, Instant)>>,
}

fn http() -> Result<openidconnect::reqwest::Client, ApiError> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects would open the token exchange to SSRF.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::internal(format!("HTTP client: {e}")))
}

fn unavailable(provider: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(provider, error = %e, "OIDC provider unreachable or invalid");
    ApiError::new(
        "UNAVAILABLE",
        format!("the sign-in provider {provider} cannot be reached right now; try again later"),
    )
}

impl Oidc {
    pub fn new(providers: BTreeMap<String, ProviderSettings>) -> Self {
        Self { providers, ..Default::default() }
    }

    fn settings(&self, provider: &str) -> Result<&ProviderSettings, ApiError> {
        self.providers.get(provider).ok_or_else(|| {
            let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            ApiError::not_found(format!("no sign-in provider {provider:?} (configured: {})", known.join(", ")))
        })
    }

    /// The provider's metadata and keys; `refresh` fetches them again (rate-limited).
    async fn metadata(&self, provider: &str, refresh: bool) -> Result<CoreProviderMetadata, ApiError> {
        let settings = self.settings(provider)?;
        let mut cache = self.discovered.lock().await;
        if let Some(d) = cache.get(provider)
            && (!refresh || d.fetched.elapsed() < REFETCH_EVERY)
        {
            return Ok(d.metadata.clone());
        }
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|e| unavailable(provider, e))?;
        let metadata =
            CoreProviderMetadata::discover_async(issuer, &http()?).await.map_err(|e| unavailable(provider, e))?;
        cache.insert(provider.to_owned(), Discovered { metadata: metadata.clone(), fetched: Instant::now() });
        Ok(metadata)
    }

    /// This hub as `provider`'s client, from its (cached, or with `refresh` re-fetched)
    /// metadata and keys.
    async fn client(&self, provider: &str, refresh: bool) -> Result<Client, ApiError> {
        let settings = self.settings(provider)?;
        Ok(CoreClient::from_provider_metadata(
            self.metadata(provider, refresh).await?,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(settings.client_secret.clone())),
        ))
    }

    fn prune(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, p| p.at.elapsed() < PENDING);
        self.signups.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, s| s.at.elapsed() < PENDING);
    }

    /// Verifies an ID token from `provider`: signature (asymmetric algorithms only), issuer,
    /// audience, expiry, and `nonce`. An unknown key id fetches the keys again, once.
    async fn verify(
        &self,
        provider: &str,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<CoreIdTokenClaims, ApiError> {
        for refresh in [false, true] {
            let client = self.client(provider, refresh).await?;
            let verifier = client.id_token_verifier().set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ]);
            match id_token.claims(&verifier, nonce) {
                Ok(claims) => return Ok(claims.clone()),
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    if !refresh =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(ApiError::unauthenticated(format!("the sign-in provider's ID token was refused: {e}")));
                }
            }
        }
        Err(ApiError::unauthenticated("the ID token is signed with a key the provider does not publish"))
    }
}

/// A provider's client as discovery makes it (auth URL set, token and user-info URLs as the
/// provider advertises them).
type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The id a provider's subject is linked under on the hub stream.
fn external_id(issuer: &str, subject: &str) -> String {
    format!("{}{issuer} {subject}", openguild_domain::hub::policy::SIGN_ON_PREFIX)
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&random16());
    b[16..].copy_from_slice(&random16());
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A relative path on this server, or `/`: never an open redirect.
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

fn refuse(status: StatusCode, e: ApiError) -> Response {
    (status, axum::Json(json!({ "error": { "code": e.code, "message": e.message } }))).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

#[derive(Deserialize)]
pub(crate) struct StartParams {
    return_to: Option<String>,
    login_hint: Option<String>,
}

/// `GET /auth/oidc/{provider}/start`: to the provider's login page.
pub(crate) async fn start(
    State(api): State<AppState>,
    Path(provider): Path<String>,
    Query(params): Query<StartParams>,
) -> Response {
    match start_url(&api, &provider, params).await {
        Ok(url) => redirect(&url),
        Err(e) => {
            let status = match e.code {
                "NOT_FOUND" => StatusCode::NOT_FOUND,
                "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            };
            refuse(status, e)
        }
    }
}

/// Where a Matrix client's single sign-on starts (`/login/sso/redirect`): the provider's
/// login page, for `provider` or the only (or first) one configured. Back from it, the client
/// is sent to `redirect_url` with a `loginToken` to exchange at `/login` (`m.login.token`).
pub async fn matrix_sso_start(api: &Api, provider: Option<&str>, redirect_url: &str) -> Result<String, ApiError> {
    let provider = match provider {
        Some(p) => p.to_owned(),
        None => api
            .oidc
            .providers
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| ApiError::not_found("no single sign-on provider is configured on this hub"))?,
    };
    if !(redirect_url.starts_with("https://") || redirect_url.starts_with("http://")) {
        return Err(ApiError::invalid("redirectUrl", "must be an http(s) URL of the client"));
    }
    let params = StartParams { return_to: None, login_hint: None };
    start_url_for(api, &provider, params, Some(redirect_url.to_owned())).await
}

impl Oidc {
    /// The session a Matrix login token hands over, once, within [`PENDING`].
    pub fn take_login_token(&self, token: &str) -> Option<String> {
        let (session, at) = self.login_tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(token)?;
        (at.elapsed() < PENDING).then_some(session)
    }

    fn mint_login_token(&self, session: String) -> String {
        let token = random_token();
        let mut tokens = self.login_tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, (_, at)| at.elapsed() < PENDING);
        tokens.insert(token.clone(), (session, Instant::now()));
        token
    }
}

async fn start_url(api: &Api, provider: &str, params: StartParams) -> Result<String, ApiError> {
    start_url_for(api, provider, params, None).await
}

async fn start_url_for(
    api: &Api,
    provider: &str,
    params: StartParams,
    matrix: Option<String>,
) -> Result<String, ApiError> {
    let oidc = &api.oidc;
    oidc.prune();
    if oidc.pending.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_PENDING {
        return Err(ApiError::rate_limited(
            "too many logins are in progress; try again shortly",
            Duration::from_secs(5),
        ));
    }
    let settings = oidc.settings(provider)?;
    let client = oidc.client(provider, false).await?.set_redirect_uri(api.oidc_redirect(provider)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for scope in settings.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(hint) = &params.login_hint {
        request = request.add_extra_param("login_hint", hint.clone());
    }
    let (url, state, nonce) = request.url();
    oidc.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(
        state.secret().clone(),
        Pending {
            provider: provider.to_owned(),
            verifier,
            nonce,
            return_to: safe_return(params.return_to.as_deref()),
            matrix,
            at: Instant::now(),
        },
    );
    Ok(url.to_string())
}

#[derive(Deserialize)]
pub(crate) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/{provider}/callback`: back from the provider. Redirects to the page the
/// login started from, with `#token=…` (a session) or `#signup=…&handle=…` (a first login:
/// pick a handle with `completeSignup`).
pub(crate) async fn callback(
    State(api): State<AppState>,
    Path(provider): Path<String>,
    Query(params): Query<CallbackParams>,
) -> Response {
    if let Some(error) = params.error {
        let why = params.error_description.unwrap_or(error);
        return refuse(StatusCode::UNAUTHORIZED, ApiError::unauthenticated(format!("the provider said no: {why}")));
    }
    let pending =
        params.state.as_deref().and_then(|s| api.oidc.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(s));
    let Some(pending) = pending.filter(|p| p.provider == provider && p.at.elapsed() < PENDING) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ApiError::invalid("state", "this login is unknown, already used or expired; start the login again"),
        );
    };
    let Some(code) = params.code else {
        return refuse(StatusCode::BAD_REQUEST, ApiError::invalid("code", "the provider sent no authorization code"));
    };
    let outcome = finish(&api, &provider, code, pending.verifier, &pending.nonce).await;
    if let Some(client) = pending.matrix {
        return matrix_back(&api, &client, outcome).await;
    }
    match outcome {
        Ok(Outcome::Session(token)) => redirect(&format!("{}#token={token}", pending.return_to)),
        Ok(Outcome::Signup { signup, suggested }) => {
            redirect(&format!("{}#signup={signup}&handle={}", pending.return_to, suggested.unwrap_or_default()))
        }
        Err(e) => refuse(StatusCode::UNAUTHORIZED, e),
    }
}

/// Back to a Matrix client with a login token: a first login takes the handle the provider
/// suggests (a Matrix client has no page to pick one).
async fn matrix_back(api: &Api, client: &str, outcome: Result<Outcome, ApiError>) -> Response {
    let session = match outcome {
        Ok(Outcome::Session(token)) => Ok(token),
        Ok(Outcome::Signup { signup, suggested: Some(handle) }) => {
            api.complete_signup(&signup, &handle).await.map(|(token, _)| token)
        }
        Ok(Outcome::Signup { suggested: None, .. }) => Err(ApiError::invalid(
            "handle",
            "the provider suggests no username to make a handle of; sign up in the web client first",
        )),
        Err(e) => Err(e),
    };
    match session {
        Ok(session) => {
            let token = api.oidc.mint_login_token(session);
            let sep = if client.contains('?') { '&' } else { '?' };
            redirect(&format!("{client}{sep}loginToken={token}"))
        }
        Err(e) => refuse(StatusCode::UNAUTHORIZED, e),
    }
}

enum Outcome {
    Session(String),
    Signup { signup: String, suggested: Option<String> },
}

async fn finish(
    api: &Api,
    provider: &str,
    code: String,
    verifier: PkceCodeVerifier,
    nonce: &Nonce,
) -> Result<Outcome, ApiError> {
    let settings = api.oidc.settings(provider)?;
    let client = api.oidc.client(provider, false).await?.set_redirect_uri(api.oidc_redirect(provider)?);
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| unavailable(provider, e))?
        .set_pkce_verifier(verifier)
        .request_async(&http()?)
        .await
        .map_err(|e| ApiError::unauthenticated(format!("the provider refused the authorization code: {e}")))?;
    let id_token = response.id_token().ok_or_else(|| ApiError::unauthenticated("the provider sent no ID token"))?;
    let claims = api.oidc.verify(provider, id_token, nonce).await?;
    login_or_signup(api, &settings.issuer, &claims).await
}

async fn login_or_signup(api: &Api, issuer: &str, claims: &CoreIdTokenClaims) -> Result<Outcome, ApiError> {
    let external = external_id(issuer.trim_end_matches('/'), claims.subject().as_str());
    if let Some(user) = api.linked_user(&external).await? {
        return Ok(Outcome::Session(api.issue_session(&user, now()).await?));
    }
    let suggested = claims
        .preferred_username()
        .map(|u| u.as_str().to_lowercase())
        .filter(|h| openguild_domain::ids::validate_handle(h).is_ok());
    let display_name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    let signup = random_token();
    api.oidc.signups.lock().unwrap_or_else(|p| p.into_inner()).insert(
        signup.clone(),
        Signup { external_id: external, suggested: suggested.clone(), display_name, at: Instant::now() },
    );
    Ok(Outcome::Signup { signup, suggested })
}

#[derive(Deserialize)]
pub(crate) struct IdTokenLogin {
    id_token: String,
    nonce: String,
}

/// `POST /auth/oidc/{provider}/id-token` `{id_token, nonce}`: for native apps that ran the
/// flow with the provider themselves. The same checks as the callback; the answer is JSON
/// (`{token}` or `{signup, handle}`).
pub(crate) async fn id_token(
    State(api): State<AppState>,
    Path(provider): Path<String>,
    axum::Json(body): axum::Json<IdTokenLogin>,
) -> Response {
    let result = async {
        let settings = api.oidc.settings(&provider)?;
        let token: CoreIdToken =
            body.id_token.parse().map_err(|e| ApiError::invalid("id_token", format!("not a JWT: {e}")))?;
        let claims = api.oidc.verify(&provider, &token, &Nonce::new(body.nonce)).await?;
        login_or_signup(&api, &settings.issuer, &claims).await
    }
    .await;
    match result {
        Ok(Outcome::Session(token)) => axum::Json(json!({ "token": token })).into_response(),
        Ok(Outcome::Signup { signup, suggested }) => {
            axum::Json(json!({ "signup": signup, "handle": suggested })).into_response()
        }
        Err(e) if e.code == "NOT_FOUND" => refuse(StatusCode::NOT_FOUND, e),
        Err(e) => refuse(StatusCode::UNAUTHORIZED, e),
    }
}

/// `GET /auth/providers`: the configured providers, for login buttons.
pub(crate) async fn providers(State(api): State<AppState>) -> Response {
    let list: Vec<_> = api
        .oidc
        .providers
        .iter()
        .map(|(name, p)| {
            json!({ "name": name, "displayName": p.display_name.clone().unwrap_or_else(|| name.clone()), "start": format!("/auth/oidc/{name}/start") })
        })
        .collect();
    axum::Json(json!({ "providers": list })).into_response()
}

impl Api {
    /// Where `provider` sends people back to: `<public url>/auth/oidc/<provider>/callback`.
    fn oidc_redirect(&self, provider: &str) -> Result<RedirectUrl, ApiError> {
        RedirectUrl::new(format!("{}/auth/oidc/{provider}/callback", self.public_url()))
            .map_err(|e| ApiError::invalid("public_url", format!("cannot make the OIDC redirect URL: {e}")))
    }

    /// Finishes a first login: creates the account with the chosen handle, links the
    /// provider's subject to it, and opens a session. A taken handle leaves the signup open
    /// for another try.
    pub async fn complete_signup(
        &self,
        signup: &str,
        handle: &str,
    ) -> Result<(String, openguild_domain::UserId), ApiError> {
        let pending = self
            .oidc
            .signups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(signup)
            .filter(|s| s.at.elapsed() < PENDING)
            .cloned()
            .ok_or_else(|| ApiError::invalid("signupToken", "unknown or expired; sign in with the provider again"))?;
        let user = self.local_user(handle)?;
        let register = openguild_domain::account::AccountCommand::Register {
            display_name: pending.display_name.clone().unwrap_or_else(|| handle.to_owned()),
            password: None,
            bot_of: None,
        };
        self.commands.account(&user, &register, now()).await?;
        let sender = self.hub_identity("_oidc")?;
        let link = openguild_domain::hub::HubCommand::LinkExternalUser {
            external_id: pending.external_id.clone(),
            user: user.clone(),
        };
        self.commands.hub(&sender, &openguild_domain::hub::HubActor::Console, &link, now()).await?;
        self.oidc.signups.lock().unwrap_or_else(|p| p.into_inner()).remove(signup);
        Ok((self.issue_session(&user, now()).await?, user))
    }
}

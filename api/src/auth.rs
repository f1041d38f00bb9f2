//! Local accounts and bearer sessions.
//!
//! A session token is `<user id, base64url>.<32 random bytes, base64url>`. Only the BLAKE3
//! hash of the token is stored (a `session.opened` event on the user's stream), so a leaked
//! event store leaks no usable token. Naming the user in the token lets any node check it
//! against that one account's stream, with no session table to keep in step.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use openguild_domain::account::AccountCommand;
use openguild_domain::{Timestamp, UserId};

use crate::Api;
use crate::clock::now;
use crate::commands::random16;
use crate::errors::ApiError;
use crate::limits::Rate;

/// Who is asking: the user and the session they asked with.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user: UserId,
    pub token_hash: [u8; 32],
    /// For a bot: the one guild it may act in.
    pub bot_of: Option<openguild_domain::GuildId>,
}

const TOKEN_CONTEXT: &str = "openguild 2026-11 session token";
const SERVICE_CONTEXT: &str = "openguild 2026-11 service token";
/// Service tokens start with this, so a leaked one is recognisable (and greppable).
pub const SERVICE_PREFIX: &str = "ogs_";

/// A host application, authenticated by a service token.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub scopes: std::collections::BTreeSet<openguild_domain::hub::TokenScope>,
    pub token_hash: [u8; 32],
}

/// A new service token and the hash that is stored.
pub fn new_service_token() -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(&random16());
    secret[16..].copy_from_slice(&random16());
    let token = format!("{SERVICE_PREFIX}{}", B64URL.encode(secret));
    let hash = service_token_hash(&token);
    (token, hash)
}

pub fn service_token_hash(token: &str) -> [u8; 32] {
    blake3::Hasher::new_derive_key(SERVICE_CONTEXT).update(token.as_bytes()).finalize().into()
}

/// The short public id of a service token: the first 8 bytes of its hash, in hex.
pub fn service_token_id(hash: &[u8; 32]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// A new token for `user` and the hash that is stored.
fn new_token(user: &UserId) -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(&random16());
    secret[16..].copy_from_slice(&random16());
    let token = format!("{}.{}", B64URL.encode(user.as_str()), B64URL.encode(secret));
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> [u8; 32] {
    blake3::Hasher::new_derive_key(TOKEN_CONTEXT).update(token.as_bytes()).finalize().into()
}

/// The user a token claims to be, and its hash; `None` if it is not shaped like a token.
fn parse_token(token: &str) -> Option<(UserId, [u8; 32])> {
    let (user, secret) = token.split_once('.')?;
    let user = String::from_utf8(B64URL.decode(user).ok()?).ok()?.parse().ok()?;
    (B64URL.decode(secret).ok()?.len() == 32).then(|| (user, token_hash(token)))
}

/// Argon2id working memory (19 MiB each, OWASP's parameters), reused. Hashing allocates
/// nothing: a fresh 19 MiB per login left the allocator holding gigabytes after a burst of
/// registrations (measured: 1.4 GB RSS after 400). At most one hash per core runs at once.
struct Memory {
    free: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
    permits: tokio::sync::Semaphore,
}

fn memory() -> &'static Memory {
    static MEMORY: std::sync::OnceLock<Memory> = std::sync::OnceLock::new();
    MEMORY.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Memory { free: std::sync::Mutex::new(Vec::new()), permits: tokio::sync::Semaphore::new(cores) }
    })
}

/// Runs argon2id with `params` over `password` and `salt`, in pooled memory, off the async
/// threads: the 32-byte output.
async fn argon2id(params: argon2::Params, password: Vec<u8>, salt: Vec<u8>) -> Result<[u8; 32], ApiError> {
    let memory = memory();
    let waiting = crate::metrics::HashWaiting::new();
    let _permit = memory.permits.acquire().await.map_err(|e| ApiError::internal(format!("hashing pool: {e}")))?;
    // Counted as running until the hash is done, even if this future is dropped before.
    let running = waiting.running();
    let pooled = params.block_count() == argon2::Params::DEFAULT.block_count();
    let mut blocks = if pooled { memory.free.lock().unwrap_or_else(|p| p.into_inner()).pop() } else { None }
        .unwrap_or_else(|| vec![argon2::Block::default(); params.block_count()]);
    let (result, blocks) = tokio::task::spawn_blocking(move || {
        let _running = running;
        let mut out = [0u8; 32];
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let result = argon.hash_password_into_with_memory(&password, &salt, &mut out, &mut blocks).map(|()| out);
        (result, blocks)
    })
    .await
    .map_err(|e| ApiError::internal(format!("hashing task: {e}")))?;
    if pooled {
        memory.free.lock().unwrap_or_else(|p| p.into_inner()).push(blocks);
    }
    result.map_err(|e| ApiError::internal(format!("argon2: {e}")))
}

/// A new argon2id PHC string for `password`.
async fn hash_password(password: String) -> Result<String, ApiError> {
    let params = argon2::Params::DEFAULT;
    let salt = random16();
    let out = argon2id(params.clone(), password.into_bytes(), salt.to_vec()).await?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        b64(&salt),
        b64(&out)
    ))
}

/// Whether `password` matches `phc`. With no account, a fixed hash is checked instead, so
/// the answer takes as long for unknown handles as for known ones.
async fn verify_password(phc: Option<String>, password: String) -> bool {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4bRQXkS0iFnvW+3i/6/Bd0m2QQ2upeM4UFsoSi0pWeo";
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| DUMMY.to_owned());
    let Ok(hash) = PasswordHash::new(&phc) else { return false };
    let (Ok(params), Some(expected), Some(salt)) = (argon2::Params::try_from(&hash), hash.hash, hash.salt) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    if expected.len() != 32 {
        return false;
    }
    match argon2id(params, password.into_bytes(), salt.to_vec()).await {
        // `Output`'s equality is constant-time.
        Ok(out) => known && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected),
        Err(_) => false,
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(ApiError::invalid(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters (it has {n})"),
        ));
    }
    Ok(())
}

impl Api {
    /// The user `@handle:<this hub>`, or why the handle is not one.
    pub(crate) fn local_user(&self, handle: &str) -> Result<UserId, ApiError> {
        UserId::new(handle, &self.server)
            .map_err(|e| ApiError::invalid("handle", format!("{e}; a handle is 1 to 64 of a-z 0-9 . _ = -")))
    }

    /// One of the hub's own identities (`@_services`, `@_oidc`, `@_console`), which sign
    /// what the hub does by itself.
    pub(crate) fn hub_identity(&self, name: &str) -> Result<UserId, ApiError> {
        UserId::new(name, &self.server).map_err(ApiError::internal)
    }

    /// Creates a local account and opens its first session. Registrations are limited per
    /// address and hub-wide: each costs an argon2id hash and events kept forever.
    pub async fn register(
        &self,
        handle: &str,
        password: &str,
        from: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(String, UserId), ApiError> {
        let user = self.local_user(handle)?;
        check_password(password)?;
        let limits = &self.settings.limits;
        let per_address = Rate {
            per_second: 1.0 / limits.registration_refill_seconds.max(0.001),
            burst: limits.registrations_per_address.max(1.0),
        };
        let hub_wide =
            Rate { per_second: limits.registrations_per_second.max(0.001), burst: limits.registration_burst };
        let buckets = from.map(|ip| (format!("register:ip:{ip}"), per_address)).into_iter();
        for (key, rate) in buckets.chain(std::iter::once(("register:hub".to_owned(), hub_wide))) {
            self.limiter.take(&key, rate).await.map_err(|e| {
                crate::metrics::refused("register");
                ApiError::rate_limited(
                    "too many new accounts from here; wait before registering another",
                    e.retry_after,
                )
            })?;
        }
        let phc = hash_password(password.to_owned()).await?;
        let register = AccountCommand::Register { display_name: handle.to_owned(), password: Some(phc), bot_of: None };
        self.commands.account(&user, &register, now).await?;
        let token = self.open_session(&user, now).await?;
        if self.settings.first_account_is_operator {
            // On a fresh hub the first account becomes its operator; a later one is refused
            // by the hub's own rule (it has an operator), which is not an error here.
            let hub = self.commands.hub_cell().await?;
            let fresh = hub.lock().await.operators.is_empty();
            if fresh {
                let claim = openguild_domain::hub::HubCommand::GrantOperator { user: user.clone() };
                let actor = openguild_domain::hub::HubActor::User(user.clone());
                if let Err(e) = self.commands.hub(&user, &actor, &claim, now).await {
                    tracing::debug!(error = %e, "first-account operator claim declined");
                }
            }
        }
        Ok((token, user))
    }

    /// Checks a handle and password and opens a session. Failures are rate-limited per
    /// account and per address.
    pub async fn login(
        &self,
        handle: &str,
        password: &str,
        from: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(String, UserId), ApiError> {
        const WRONG: &str = "wrong handle or password";
        let rate = Rate {
            per_second: 1.0 / self.settings.limits.login_failure_refill_seconds.max(0.001),
            burst: self.settings.limits.login_failures.max(1.0),
        };
        let user = UserId::new(handle, &self.server).ok();
        let account_key = format!("login-fail:user:{}", user.as_ref().map_or(handle, |u| u.as_str()));
        let address_key = from.map(|ip| format!("login-fail:ip:{ip}"));
        for key in std::iter::once(&account_key).chain(address_key.as_ref()) {
            self.limiter.peek(key, rate).await.map_err(|e| {
                ApiError::rate_limited("too many failed logins; wait before trying again", e.retry_after)
            })?;
        }
        let phc = match &user {
            Some(u) => self.commands.account_cell(u).await?.lock().await.password.clone(),
            None => None,
        };
        if !verify_password(phc, password.to_owned()).await {
            for key in std::iter::once(&account_key).chain(address_key.as_ref()) {
                let _ = self.limiter.take(key, rate).await;
            }
            return Err(ApiError::unauthenticated(WRONG));
        }
        let user = user.ok_or_else(|| ApiError::unauthenticated(WRONG))?;
        let token = self.open_session(&user, now).await?;
        Ok((token, user))
    }

    async fn open_session(&self, user: &UserId, now: Timestamp) -> Result<String, ApiError> {
        let (token, token_hash) = new_token(user);
        let expires_at =
            now.plus_millis(Duration::from_secs(self.settings.limits.session_days * 86_400).as_millis() as u64);
        self.commands.account(user, &AccountCommand::OpenSession { token_hash, expires_at }, now).await?;
        Ok(token)
    }

    /// Ends the session a token names.
    pub async fn logout(&self, viewer: &Viewer, now: Timestamp) -> Result<(), ApiError> {
        let cmd = AccountCommand::RevokeSession { token_hash: viewer.token_hash };
        self.commands.account(&viewer.user, &cmd, now).await?;
        Ok(())
    }

    /// The viewer a bearer token stands for, if its session is open.
    pub async fn authenticate(&self, token: &str, now: Timestamp) -> Result<Viewer, ApiError> {
        let refused = || ApiError::unauthenticated("the session token is invalid or has expired; log in again");
        let (user, token_hash) = parse_token(token).ok_or_else(refused)?;
        if user.server() != self.server {
            return Err(refused());
        }
        let account = self.commands.account_cell(&user).await?;
        let account = account.lock().await;
        if !account.session_valid(&token_hash, now) {
            return Err(refused());
        }
        let bot_of = account.bot_of;
        drop(account);
        if bot_of.is_some() {
            self.token_last_used.lock().unwrap_or_else(|p| p.into_inner()).insert(token_hash, now.as_millis());
        }
        if let Some(reason) = self.commands.hub_cell().await?.lock().await.banned.get(&user) {
            return Err(ApiError::forbidden(format!("you are banned from this hub: {reason}")));
        }
        Ok(Viewer { user, token_hash, bot_of })
    }

    /// The host application a service token stands for, if the token is live.
    pub async fn authenticate_service(&self, token: &str) -> Result<Service, ApiError> {
        let hash = service_token_hash(token);
        let hub = self.commands.hub_cell().await?;
        let hub = hub.lock().await;
        let found = hub
            .service_tokens
            .get(&hash)
            .ok_or_else(|| ApiError::unauthenticated("the service token is unknown or was revoked"))?;
        self.token_last_used.lock().unwrap_or_else(|p| p.into_inner()).insert(hash, now().as_millis());
        Ok(Service { name: found.name.clone(), scopes: found.scopes.clone(), token_hash: hash })
    }

    /// Opens a session for `user` (provisioning: a host app's frontend gets it).
    pub async fn issue_session(&self, user: &UserId, now: Timestamp) -> Result<String, ApiError> {
        self.open_session(user, now).await
    }

    /// Whether a viewer's session is still open (checked again on long-lived websockets).
    pub async fn session_open(&self, viewer: &Viewer, now: Timestamp) -> bool {
        if let Ok(hub) = self.commands.hub_cell().await
            && hub.lock().await.banned.contains_key(&viewer.user)
        {
            return false;
        }
        match self.commands.account_cell(&viewer.user).await {
            Ok(account) => account.lock().await.session_valid(&viewer.token_hash, now),
            Err(_) => true,
        }
    }
}

/// The token of an `Authorization: Bearer …` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_and_hash_stably() {
        let user: UserId = "@ann:hub.test".parse().unwrap();
        let (token, hash) = new_token(&user);
        let (parsed, parsed_hash) = parse_token(&token).unwrap();
        assert_eq!(parsed, user);
        assert_eq!(parsed_hash, hash);
        assert!(parse_token("nonsense").is_none());
        assert!(parse_token(&token.replace('.', "")).is_none());
        let (other, _) = new_token(&user);
        assert_ne!(other, token, "each session gets a fresh secret");
    }

    #[test]
    fn bearer_values_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }

    #[tokio::test]
    async fn passwords_verify_and_unknown_accounts_never_do() {
        let phc = hash_password("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(Some(phc.clone()), "correct horse".into()).await);
        assert!(!verify_password(Some(phc), "wrong horse".into()).await);
        assert!(!verify_password(None, "correct horse".into()).await);
        // Hashes made by the argon2 crate's own encoder verify too (and the reverse).
        use argon2::password_hash::{PasswordHasher, SaltString};
        let theirs = argon2::Argon2::default()
            .hash_password(b"correct horse", &SaltString::encode_b64(&[9; 16]).unwrap())
            .unwrap()
            .to_string();
        assert!(verify_password(Some(theirs), "correct horse".into()).await);
        let ours = hash_password("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(argon2::Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
    }
}

//! Local accounts and bearer sessions.
//!
//! A session token is `<user id, base64url>.<32 random bytes, base64url>`. Only the BLAKE3
//! hash of the token is stored (a `session.opened` event on the user's stream), so a leaked
//! event store leaks no usable token. Naming the user in the token lets any node check it
//! against that one account's stream, with no session table to keep in step.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use openguild_domain::account::AccountCommand;
use openguild_domain::{Timestamp, UserId};

use crate::Api;
use crate::commands::random16;
use crate::errors::ApiError;
use crate::limits::Rate;

/// Who is asking: the user and the session they asked with.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user: UserId,
    pub token_hash: [u8; 32],
}

const TOKEN_CONTEXT: &str = "openguild 2026-11 session token";
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

/// An argon2id hash (OWASP's parameters: 19 MiB, 2 passes), off the async threads.
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random16()).map_err(|e| ApiError::internal(format!("salt: {e}")))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("hashing task: {e}")))?
}

/// Whether `password` matches `phc`. With no account, a fixed hash is checked instead, so
/// the answer takes as long for unknown handles as for known ones.
async fn verify_password(phc: Option<String>, password: String) -> bool {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4bRQXkS0iFnvW+3i/6/Bd0m2QQ2upeM4UFsoSi0pWeo";
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY.to_owned());
        let ok = PasswordHash::new(&phc)
            .map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
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
    /// Creates a local account and opens its first session.
    pub async fn register(&self, handle: &str, password: &str, now: Timestamp) -> Result<(String, UserId), ApiError> {
        let user = UserId::new(handle, &self.server)
            .map_err(|e| ApiError::invalid("handle", format!("{e}; a handle is 1 to 64 of a-z 0-9 . _ = -")))?;
        check_password(password)?;
        let phc = hash_password(password.to_owned()).await?;
        let register = AccountCommand::Register { display_name: handle.to_owned(), password: Some(phc) };
        self.commands.account(&user, &register, now).await?;
        let token = self.open_session(&user, now).await?;
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
            per_second: 1.0 / self.limits.login_failure_refill_seconds.max(0.001),
            burst: self.limits.login_failures.max(1.0),
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
        let expires_at = now.plus_millis(Duration::from_secs(self.limits.session_days * 86_400).as_millis() as u64);
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
        if !account.lock().await.session_valid(&token_hash, now) {
            return Err(refused());
        }
        Ok(Viewer { user, token_hash })
    }

    /// Whether a viewer's session is still open (checked again on long-lived websockets).
    pub async fn session_open(&self, viewer: &Viewer, now: Timestamp) -> bool {
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
    }
}

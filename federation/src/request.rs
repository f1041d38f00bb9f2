//! Signed server-to-server requests. Every request between hubs carries
//!
//! ```text
//! Authorization: OpenGuild origin="hub-a.test",destination="hub-b.test",key="ed25519:a1",created="1796000000000",sig="<base64>"
//! ```
//!
//! where `sig` is the origin's Ed25519 signature over the BLAKE3 hash (context
//! `event::context::REQUEST`) of the canonical MessagePack of
//! `(method, target, origin, destination, created, blake3(body))`; `target` is the path and
//! query as sent. The receiver refuses, in this order and before any expensive work: an
//! origin not on its allowlist (403), a destination that is not itself (401), a creation time
//! more than [`SKEW_MS`] away from its clock (401), a signature it has already accepted (401,
//! a replay), an unknown key (401) and a bad signature (401). Only then does it read the body.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use openguild_domain::event::{self, context};
use openguild_domain::{KeyId, ServerKey, ServerName, Timestamp};
use serde::Serialize;

use crate::{b64, unb64};

/// How far a request's creation time may be from the receiver's clock.
pub const SKEW_MS: u64 = 5 * 60 * 1000;
/// The scheme of the `Authorization` header.
pub const SCHEME: &str = "OpenGuild";

/// A request as signed.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query, as sent (`/_openguild/federation/v1/send/abc`).
    pub target: &'a str,
    pub body: &'a [u8],
}

#[derive(Serialize)]
struct Signed<'a> {
    method: &'a str,
    target: &'a str,
    origin: &'a ServerName,
    destination: &'a ServerName,
    created: u64,
    #[serde(with = "serde_bytes_array")]
    body_digest: [u8; 32],
}

/// Bytes as MessagePack `bin`, the canonical form of byte strings.
mod serde_bytes_array {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }
}

fn signing_hash(request: &Request<'_>, origin: &ServerName, destination: &ServerName, created: u64) -> [u8; 32] {
    let signed = Signed {
        method: request.method,
        target: request.target,
        origin,
        destination,
        created,
        body_digest: blake3_digest(request.body),
    };
    // Strings, integers and bytes always encode.
    let bytes = openguild_domain::canonical::encode(&signed).unwrap_or_default();
    event::hash(context::REQUEST, &bytes)
}

fn blake3_digest(body: &[u8]) -> [u8; 32] {
    event::hash("openguild 2026-12 federation request body", body)
}

/// The `Authorization` value for `request` from `key`'s hub to `destination`, made `now`.
pub fn authorization(key: &ServerKey, destination: &ServerName, request: &Request<'_>, now: Timestamp) -> String {
    let created = now.as_millis();
    let sig = key.sign_hash(&signing_hash(request, key.server(), destination, created));
    format!(
        "{SCHEME} origin=\"{}\",destination=\"{destination}\",key=\"{}\",created=\"{created}\",sig=\"{}\"",
        key.server(),
        key.key_id(),
        b64(&sig.0)
    )
}

/// An `Authorization` header's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub origin: ServerName,
    pub destination: ServerName,
    pub key: KeyId,
    pub created: u64,
    pub sig: [u8; 64],
}

/// Why a request is refused. [`Refusal::status`] is the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no valid `Authorization: {SCHEME} …` header: {0}")]
    Malformed(String),
    #[error("{0} is not a peer of this hub")]
    NotAllowed(ServerName),
    #[error("this request is for {0}, not this hub")]
    WrongDestination(ServerName),
    #[error("the request was made {0} ms away from this hub's clock (at most {SKEW_MS}); check the clocks")]
    Stale(u64),
    #[error("this request was already received (a replay)")]
    Replayed,
    #[error("unknown key {key} of {origin}")]
    UnknownKey { origin: ServerName, key: KeyId },
    #[error("the request signature does not verify")]
    BadSignature,
}

impl Refusal {
    /// 403 for a hub that is not a peer, 401 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotAllowed(_) => 403,
            _ => 401,
        }
    }
}

impl Credentials {
    /// Reads an `Authorization` value.
    pub fn parse(value: &str) -> Result<Credentials, Refusal> {
        let malformed = |why: &str| Refusal::Malformed(why.to_owned());
        let params = value
            .trim()
            .strip_prefix(SCHEME)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| malformed("it must start with `OpenGuild `"))?;
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for part in params.split(',') {
            let (name, quoted) =
                part.trim().split_once('=').ok_or_else(|| malformed("parameters are name=\"value\""))?;
            let value = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| malformed("parameter values are quoted"))?;
            if fields.insert(name, value).is_some() {
                return Err(malformed("a parameter is given twice"));
            }
        }
        let field = |name: &str| fields.get(name).copied().ok_or_else(|| malformed(&format!("`{name}` is missing")));
        Ok(Credentials {
            origin: field("origin")?.parse().map_err(|e| malformed(&format!("origin: {e}")))?,
            destination: field("destination")?.parse().map_err(|e| malformed(&format!("destination: {e}")))?,
            key: field("key")?.parse().map_err(|e| malformed(&format!("key: {e}")))?,
            created: field("created")?.parse().map_err(|_| malformed("created: not milliseconds since the epoch"))?,
            sig: unb64(field("sig")?)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| malformed("sig: not a base64 Ed25519 signature"))?,
        })
    }
}

/// Signatures already accepted, until they are too old to be accepted anyway.
#[derive(Default)]
pub struct Replays {
    seen: HashMap<[u8; 64], u64>,
}

impl Replays {
    fn seen(&self, sig: &[u8; 64]) -> bool {
        self.seen.contains_key(sig)
    }

    fn remember(&mut self, sig: [u8; 64], created: u64, now: u64) {
        if self.seen.len() >= 4_096 {
            self.seen.retain(|_, at| now.abs_diff(*at) <= SKEW_MS);
        }
        self.seen.insert(sig, created);
    }
}

/// What the receiver knows: its own name, who its peers are, their keys valid now.
pub struct Receiver<'a> {
    pub us: &'a ServerName,
    pub is_peer: &'a dyn Fn(&ServerName) -> bool,
    /// The public key of `(origin, key id)` if it is valid now.
    pub key: &'a dyn Fn(&ServerName, &KeyId) -> Option<[u8; 32]>,
}

impl Receiver<'_> {
    /// Checks one request, in the protocol's order, and remembers an accepted signature.
    /// The origin, if the request is to be served.
    pub fn check(
        &self,
        authorization: Option<&str>,
        request: &Request<'_>,
        now: Timestamp,
        replays: &mut Replays,
    ) -> Result<ServerName, Refusal> {
        let credentials = Credentials::parse(authorization.ok_or_else(|| Refusal::Malformed("it is missing".into()))?)?;
        if !(self.is_peer)(&credentials.origin) {
            return Err(Refusal::NotAllowed(credentials.origin));
        }
        if credentials.destination != *self.us {
            return Err(Refusal::WrongDestination(credentials.destination));
        }
        let skew = now.as_millis().abs_diff(credentials.created);
        if skew > SKEW_MS {
            return Err(Refusal::Stale(skew));
        }
        if replays.seen(&credentials.sig) {
            return Err(Refusal::Replayed);
        }
        let public = (self.key)(&credentials.origin, &credentials.key)
            .ok_or_else(|| Refusal::UnknownKey { origin: credentials.origin.clone(), key: credentials.key.clone() })?;
        let public = VerifyingKey::from_bytes(&public).map_err(|_| Refusal::BadSignature)?;
        let hash = signing_hash(request, &credentials.origin, &credentials.destination, credentials.created);
        public.verify_strict(&hash, &Signature::from_bytes(&credentials.sig)).map_err(|_| Refusal::BadSignature)?;
        replays.remember(credentials.sig, credentials.created, now.as_millis());
        Ok(credentials.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server: &str, seed: u8) -> ServerKey {
        ServerKey::from_seed(server.parse().unwrap(), "ed25519:a1".parse().unwrap(), [seed; 32])
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    const NOW: u64 = 1_796_000_000_000;

    /// Hub B receiving from its peer hub A (and knowing A's key).
    fn check(header: &str, request: &Request<'_>, now: u64, replays: &mut Replays) -> Result<ServerName, Refusal> {
        let us: ServerName = "hub-b.test".parse().unwrap();
        let a = key("hub-a.test", 1);
        let is_peer = |s: &ServerName| s.as_str() == "hub-a.test";
        let known = |s: &ServerName, k: &KeyId| (s == a.server() && k == a.key_id()).then(|| a.public_key());
        Receiver { us: &us, is_peer: &is_peer, key: &known }.check(Some(header), request, at(now), replays)
    }

    #[test]
    fn a_signed_request_is_accepted_once_and_each_refusal_comes_in_order() {
        let a = key("hub-a.test", 1);
        let b: ServerName = "hub-b.test".parse().unwrap();
        let request = Request { method: "PUT", target: "/_openguild/federation/v1/send/t1", body: b"{\"events\":[]}" };
        let header = authorization(&a, &b, &request, at(NOW));
        let mut replays = Replays::default();
        assert_eq!(check(&header, &request, NOW + 1_000, &mut replays).unwrap().as_str(), "hub-a.test");
        assert_eq!(check(&header, &request, NOW + 2_000, &mut replays), Err(Refusal::Replayed));

        let mut fresh = Replays::default();
        // Not a peer: refused first, with 403, whatever else is wrong.
        let stranger = authorization(&key("hub-x.test", 3), &"hub-c.test".parse().unwrap(), &request, at(0));
        let refusal = check(&stranger, &request, NOW, &mut fresh).unwrap_err();
        assert_eq!((refusal.status(), refusal), (403, Refusal::NotAllowed("hub-x.test".parse().unwrap())));
        // For another hub.
        let elsewhere = authorization(&a, &"hub-c.test".parse().unwrap(), &request, at(0));
        assert!(matches!(check(&elsewhere, &request, NOW, &mut fresh), Err(Refusal::WrongDestination(_))));
        // Too old, or from the future.
        assert!(matches!(check(&header, &request, NOW + SKEW_MS + 1, &mut fresh), Err(Refusal::Stale(_))));
        assert!(matches!(check(&header, &request, NOW - SKEW_MS - 1, &mut fresh), Err(Refusal::Stale(_))));
        // Another body, method or target than signed.
        let other_body = Request { body: b"{\"events\":[1]}", ..request };
        assert_eq!(check(&header, &other_body, NOW, &mut fresh), Err(Refusal::BadSignature));
        let other_target = Request { target: "/_openguild/federation/v1/send/t2", ..request };
        assert_eq!(check(&header, &other_target, NOW, &mut fresh), Err(Refusal::BadSignature));
        // Signed by a key the receiver does not know for A.
        let forged = authorization(&key("hub-a.test", 9), &b, &request, at(NOW));
        assert_eq!(check(&forged, &request, NOW, &mut fresh), Err(Refusal::BadSignature));
        let other_id = ServerKey::from_seed("hub-a.test".parse().unwrap(), "ed25519:z9".parse().unwrap(), [1; 32]);
        let unknown = authorization(&other_id, &b, &request, at(NOW));
        assert!(matches!(check(&unknown, &request, NOW, &mut fresh), Err(Refusal::UnknownKey { .. })));
        // A refused request leaves no trace: the genuine one still goes through once.
        assert!(check(&header, &request, NOW, &mut fresh).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused_with_what_is_wrong() {
        for (value, says) in [
            ("Bearer abc", "OpenGuild"),
            ("OpenGuild origin=hub-a.test", "quoted"),
            ("OpenGuild origin=\"hub-a.test\"", "destination"),
            (
                "OpenGuild origin=\"hub-a.test\",destination=\"hub-b.test\",key=\"ed25519:a1\",created=\"x\",sig=\"AA\"",
                "created",
            ),
        ] {
            let err = Credentials::parse(value).unwrap_err();
            assert!(err.to_string().contains(says), "{value}: {err}");
        }
    }
}

//! The key document a hub publishes at `GET /_openguild/federation/v1/keys`: its current
//! verify key(s), its old keys with the time each stopped being valid, and a signature over
//! all of it by a current key (self-signed). A peer reads it into its `KeyRing`: events are
//! checked against the key valid at their own time, requests against a key valid now.
//!
//! What is signed: the BLAKE3 hash (context [`CONTEXT`]) of the canonical MessagePack of
//! `(server, verify_keys, old_verify_keys, valid_until_ts)`, the maps sorted by key id and
//! each key as its base64 text (docs/PROTOCOL.md).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use openguild_domain::event::{self, PublishedKey};
use openguild_domain::{KeyId, ServerKey, ServerName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{b64, unb64};

/// The derive-key context of a key document's signature.
pub const CONTEXT: &str = "openguild 2026-12 federation key document";
/// How long a peer may cache a document before asking again.
pub const VALID_FOR_MS: u64 = 60 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyKey {
    /// The Ed25519 public key, base64.
    pub key: String,
    /// From when it signs (ms since the epoch).
    pub valid_from_ts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldVerifyKey {
    pub key: String,
    pub valid_from_ts: u64,
    /// When it stopped being valid: events at or after this time do not verify with it.
    pub expired_ts: u64,
}

/// A hub's published keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDocument {
    pub server: ServerName,
    pub verify_keys: BTreeMap<KeyId, VerifyKey>,
    #[serde(default)]
    pub old_verify_keys: BTreeMap<KeyId, OldVerifyKey>,
    /// Until when this document may be cached.
    pub valid_until_ts: u64,
    /// `{ server: { key id: base64 signature } }`.
    pub signatures: BTreeMap<ServerName, BTreeMap<KeyId, String>>,
}

/// Why a key document is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key document is for {found}, not {expected}")]
    WrongServer { expected: ServerName, found: ServerName },
    #[error("the key document has no signature by one of its own current keys")]
    Unsigned,
    #[error("the key document's signature by {0} does not verify")]
    BadSignature(KeyId),
    #[error("key {0} is not a 32-byte Ed25519 key in base64")]
    BadKey(KeyId),
    #[error("the key document cannot be encoded canonically: {0}")]
    Encoding(String),
}

#[derive(Serialize)]
struct Signed<'a> {
    server: &'a ServerName,
    verify_keys: &'a BTreeMap<KeyId, VerifyKey>,
    old_verify_keys: &'a BTreeMap<KeyId, OldVerifyKey>,
    valid_until_ts: u64,
}

impl KeyDocument {
    /// The document for `current` (signing since `valid_from`) and the hub's `old` keys,
    /// signed by `current`, cacheable for an hour from `now`.
    pub fn publish(
        current: &ServerKey,
        valid_from: Timestamp,
        old: BTreeMap<KeyId, OldVerifyKey>,
        now: Timestamp,
    ) -> Result<KeyDocument, KeyError> {
        let verify_keys = BTreeMap::from([(
            current.key_id().clone(),
            VerifyKey { key: b64(&current.public_key()), valid_from_ts: valid_from.as_millis() },
        )]);
        let mut doc = KeyDocument {
            server: current.server().clone(),
            verify_keys,
            old_verify_keys: old,
            valid_until_ts: now.as_millis().saturating_add(VALID_FOR_MS),
            signatures: BTreeMap::new(),
        };
        let signature = current.sign_hash(&doc.signing_hash()?);
        doc.signatures.insert(doc.server.clone(), BTreeMap::from([(current.key_id().clone(), b64(&signature.0))]));
        Ok(doc)
    }

    fn signing_hash(&self) -> Result<[u8; 32], KeyError> {
        let signed = Signed {
            server: &self.server,
            verify_keys: &self.verify_keys,
            old_verify_keys: &self.old_verify_keys,
            valid_until_ts: self.valid_until_ts,
        };
        let bytes = openguild_domain::canonical::encode(&signed).map_err(|e| KeyError::Encoding(e.to_string()))?;
        Ok(event::hash(CONTEXT, &bytes))
    }

    /// Checks that the document is `expected`'s and signed by its own current key(s), and
    /// gives its keys as the key ring takes them: each with the window in which it signed.
    pub fn verify(&self, expected: &ServerName) -> Result<Vec<(KeyId, PublishedKey)>, KeyError> {
        if self.server != *expected {
            return Err(KeyError::WrongServer { expected: expected.clone(), found: self.server.clone() });
        }
        let hash = self.signing_hash()?;
        let mut checked = 0;
        for (key_id, sig) in self.signatures.get(&self.server).into_iter().flatten() {
            let Some(key) = self.verify_keys.get(key_id) else { continue };
            let public = public_key(key_id, &key.key)?;
            let sig: [u8; 64] =
                unb64(sig).and_then(|b| b.try_into().ok()).ok_or_else(|| KeyError::BadSignature(key_id.clone()))?;
            public
                .verify_strict(&hash, &Signature::from_bytes(&sig))
                .map_err(|_| KeyError::BadSignature(key_id.clone()))?;
            checked += 1;
        }
        if checked == 0 {
            return Err(KeyError::Unsigned);
        }
        let mut keys = Vec::new();
        for (key_id, k) in &self.verify_keys {
            let published = PublishedKey {
                public_key: public_key(key_id, &k.key)?.to_bytes(),
                valid_from: Timestamp::from_millis(k.valid_from_ts).unwrap_or_default(),
                valid_until: None,
            };
            keys.push((key_id.clone(), published));
        }
        for (key_id, k) in &self.old_verify_keys {
            let published = PublishedKey {
                public_key: public_key(key_id, &k.key)?.to_bytes(),
                valid_from: Timestamp::from_millis(k.valid_from_ts).unwrap_or_default(),
                valid_until: Timestamp::from_millis(k.expired_ts).ok(),
            };
            keys.push((key_id.clone(), published));
        }
        Ok(keys)
    }
}

/// Checks a hub's signature by `key_id` over `hash` (a proposal's signing hash,
/// `openguild_domain::proposal`), with that key of `keys` valid at `at`.
pub fn verify_hub_signature(
    hash: &[u8; 32],
    key_id: &KeyId,
    signature: &openguild_domain::event::Signature,
    keys: &[(KeyId, PublishedKey)],
    at: Timestamp,
) -> Result<(), String> {
    let Some((_, key)) = keys.iter().find(|(id, _)| id == key_id) else {
        return Err(format!("unknown key {key_id}"));
    };
    if at < key.valid_from || key.valid_until.is_some_and(|until| at >= until) {
        return Err(format!("key {key_id} was not valid at the proposal's time"));
    }
    let public = VerifyingKey::from_bytes(&key.public_key).map_err(|_| format!("key {key_id} is not a valid key"))?;
    public.verify_strict(hash, &Signature::from_bytes(&signature.0)).map_err(|_| format!("bad signature by {key_id}"))
}

fn public_key(key_id: &KeyId, text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; 32] =
        unb64(text).and_then(|b| b.try_into().ok()).ok_or_else(|| KeyError::BadKey(key_id.clone()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadKey(key_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8, id: &str) -> ServerKey {
        ServerKey::from_seed("hub-a.test".parse().unwrap(), id.parse().unwrap(), [seed; 32])
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    #[test]
    fn a_published_document_verifies_and_gives_each_key_its_window() {
        let old = BTreeMap::from([(
            "ed25519:a0".parse().unwrap(),
            OldVerifyKey { key: b64(&key(1, "ed25519:a0").public_key()), valid_from_ts: 0, expired_ts: 1_000 },
        )]);
        let doc = KeyDocument::publish(&key(2, "ed25519:a1"), at(1_000), old, at(5_000)).unwrap();
        let json = serde_json::to_string(&doc).unwrap();
        let back: KeyDocument = serde_json::from_str(&json).unwrap();
        let keys = back.verify(&"hub-a.test".parse().unwrap()).unwrap();
        assert_eq!(keys.len(), 2);
        let old = keys.iter().find(|(id, _)| id.to_string() == "ed25519:a0").unwrap();
        assert_eq!(old.1.valid_until, Some(at(1_000)));
        assert_eq!(back.valid_until_ts, 5_000 + VALID_FOR_MS);
    }

    #[test]
    fn a_tampered_or_foreign_document_is_refused() {
        let doc = KeyDocument::publish(&key(2, "ed25519:a1"), at(0), BTreeMap::new(), at(5_000)).unwrap();
        let mut longer = doc.clone();
        longer.valid_until_ts += 1;
        assert_eq!(longer.verify(&doc.server).unwrap_err(), KeyError::BadSignature("ed25519:a1".parse().unwrap()));
        let mut swapped = doc.clone();
        swapped.verify_keys.get_mut(&"ed25519:a1".parse().unwrap()).unwrap().key =
            b64(&key(9, "ed25519:a1").public_key());
        assert!(swapped.verify(&doc.server).is_err(), "a key swapped in is not signed by itself");
        assert!(matches!(doc.verify(&"hub-b.test".parse().unwrap()), Err(KeyError::WrongServer { .. })));
        let mut unsigned = doc;
        unsigned.signatures.clear();
        assert_eq!(unsigned.verify(&unsigned.server.clone()).unwrap_err(), KeyError::Unsigned);
    }
}

//! Signed events: the envelope, its canonical bytes, signing and verification.
//!
//! An event is stored as three byte strings, exactly as signed:
//! - `core`: canonical MessagePack of [`EventCore`]: stream, seq, prev, auth, origin,
//!   sender, ts, the body's *redacted form* and `content_hash` (blake3 of the full body),
//!   and for a sender of another hub than the origin its hub's `proposal` seal;
//! - `body`: canonical MessagePack of the full [`EventBody`], or nothing once erased;
//! - `signatures`: `{ server: { "ed25519:<key id>": signature } }`.
//!
//! The event id is `$` + base58(blake3(core)); each signature signs those 32 hash bytes.
//! Erasing a body (redaction, GDPR, retention) deletes `body` and nothing else, so the id
//! and the signatures still check. Each blake3 use has its own derive-key context.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::body::legacy::LegacyBody;
use crate::body::{EventBody, GuildCreated};
use crate::canonical::{self, CanonicalError};
use crate::ids::{EventId, GuildId, KeyId, ServerName, StreamId, Timestamp, UserId};

/// blake3 derive-key contexts, one per purpose, so a hash made for one purpose is never
/// valid for another.
pub mod context {
    pub const EVENT_ID: &str = "openguild 2026-11 event id";
    pub const CONTENT_HASH: &str = "openguild 2026-11 event content hash";
    pub const GUILD_ID: &str = "openguild 2026-11 guild id";
    pub const REQUEST: &str = "openguild 2026-11 federation request signature";
    pub const PROPOSAL: &str = "openguild 2026-12 proposal";
}

/// The part of an event that its id and signatures cover.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EventCore {
    pub stream: StreamId,
    /// 1-based position in the stream.
    pub seq: u64,
    /// The stream's previous event (none for seq 1).
    pub prev: Vec<EventId>,
    /// Events this one was authorised against (for a message: the guild stream's head).
    pub auth: Vec<EventId>,
    pub origin: ServerName,
    pub sender: UserId,
    pub ts: Timestamp,
    /// The body reduced to its redacted form.
    pub redacted: EventBody,
    #[serde(with = "canonical::bytes")]
    pub content_hash: [u8; 32],
    /// For a sender whose account lives on another hub than `origin`: that hub's seal on
    /// the proposal the event was made from (`crate::proposal`). Absent otherwise, and then
    /// not encoded at all, so events without one keep their bytes and ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Seal>,
}

/// [`EventCore`] with a superseded body form, as found on the wire before upcasting.
#[derive(Serialize, Deserialize)]
struct LegacyCore {
    stream: StreamId,
    seq: u64,
    prev: Vec<EventId>,
    auth: Vec<EventId>,
    origin: ServerName,
    sender: UserId,
    ts: Timestamp,
    redacted: LegacyBody,
    #[serde(with = "canonical::bytes")]
    content_hash: [u8; 32],
}

/// Decodes a core: the current form first (the fast path), a superseded one only if that
/// fails.
fn decode_core(bytes: &[u8], strict: bool) -> Result<EventCore, CanonicalError> {
    decode_as::<EventCore>(bytes, strict).or_else(|current_err| match decode_as::<LegacyCore>(bytes, strict) {
        Ok(old) => Ok(EventCore {
            stream: old.stream,
            seq: old.seq,
            prev: old.prev,
            auth: old.auth,
            origin: old.origin,
            sender: old.sender,
            ts: old.ts,
            redacted: old.redacted.upcast(),
            content_hash: old.content_hash,
            proposal: None,
        }),
        Err(_) => Err(current_err),
    })
}

/// Decodes a body the same way.
fn decode_body(bytes: &[u8], strict: bool) -> Result<EventBody, CanonicalError> {
    decode_as::<EventBody>(bytes, strict)
        .or_else(|current_err| decode_as::<LegacyBody>(bytes, strict).map(LegacyBody::upcast).map_err(|_| current_err))
}

fn decode_as<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8], strict: bool) -> Result<T, CanonicalError> {
    if strict { canonical::decode(bytes) } else { canonical::decode_lenient(bytes) }
}

/// An Ed25519 signature: bin in MessagePack, unpadded base64 in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "canonical::bytes")] pub [u8; 64]);

/// The seal of a remote sender's hub on the proposal an event was made from, carried in the
/// event's core (`crate::proposal`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Seal {
    /// The key of the sender's hub that signed.
    pub key_id: KeyId,
    #[serde(with = "canonical::bytes")]
    pub nonce: [u8; 16],
    pub ts: Timestamp,
    pub signature: Signature,
}

/// `{ server: { key id: signature } }`.
pub type Signatures = BTreeMap<ServerName, BTreeMap<KeyId, Signature>>;

/// An event's stored bytes, exactly as signed. Nothing ever re-encodes these.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RawEvent {
    pub id: EventId,
    pub core: Vec<u8>,
    /// `None` once the body has been erased.
    pub body: Option<Vec<u8>>,
    pub signatures: Vec<u8>,
}

/// A decoded event.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Event {
    pub id: EventId,
    pub core: EventCore,
    /// The full body; `None` once erased.
    pub body: Option<EventBody>,
    pub signatures: Signatures,
}

impl Event {
    /// The full body if present, else its redacted form. Authorisation only needs what the
    /// redacted form keeps, so `evolve` works on erased events too.
    pub fn content(&self) -> &EventBody {
        self.body.as_ref().unwrap_or(&self.core.redacted)
    }
}

/// An event and its bytes: what `sign` returns and what the store appends and reads.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedEvent {
    pub event: Event,
    pub raw: RawEvent,
}

/// An event before signing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UnsignedEvent {
    pub stream: StreamId,
    pub seq: u64,
    pub prev: Vec<EventId>,
    pub auth: Vec<EventId>,
    pub sender: UserId,
    pub ts: Timestamp,
    pub body: EventBody,
}

/// A server's signing key.
pub struct ServerKey {
    server: ServerName,
    key_id: KeyId,
    key: SigningKey,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "ServerKey({} {})", self.server, self.key_id)
    }
}

impl ServerKey {
    /// A key from its 32-byte secret seed (made by the caller from a secure random source).
    pub fn from_seed(server: ServerName, key_id: KeyId, seed: [u8; 32]) -> Self {
        Self { server, key_id, key: SigningKey::from_bytes(&seed) }
    }

    pub fn server(&self) -> &ServerName {
        &self.server
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs arbitrary bytes under a derive-key context (e.g. federation requests).
    pub fn sign_hash(&self, hash: &[u8; 32]) -> Signature {
        Signature(self.key.sign(hash).to_bytes())
    }
}

/// A published key with the window in which it signed.
#[derive(Clone, Debug)]
pub struct PublishedKey {
    pub public_key: [u8; 32],
    pub valid_from: Timestamp,
    /// `None` while the key is current.
    pub valid_until: Option<Timestamp>,
}

/// The public keys this process trusts, old ones included.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<(ServerName, KeyId), PublishedKey>,
}

impl KeyRing {
    pub fn insert(&mut self, server: ServerName, key_id: KeyId, key: PublishedKey) {
        self.keys.insert((server, key_id), key);
    }

    /// Adds a server's own current key.
    pub fn with_own(mut self, key: &ServerKey) -> Self {
        self.insert(
            key.server.clone(),
            key.key_id.clone(),
            PublishedKey { public_key: key.public_key(), valid_from: Timestamp::default(), valid_until: None },
        );
        self
    }

    fn get(&self, server: &ServerName, key_id: &KeyId) -> Option<&PublishedKey> {
        self.keys.get(&(server.clone(), key_id.clone()))
    }
}

/// Why an event does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed event: {0}")]
    Malformed(#[from] CanonicalError),
    #[error("bad hash: the event id {claimed} does not match its bytes (they hash to {actual})")]
    BadId { claimed: EventId, actual: EventId },
    #[error("malformed event: seq 0; a stream's seqs start at 1")]
    ZeroSeq,
    #[error("bad content hash: the body does not match the hash the event was signed with")]
    BadContentHash,
    #[error("the body does not reduce to the redacted form that was signed")]
    RedactionMismatch,
    #[error("no signature from the origin server {0}")]
    Unsigned(ServerName),
    #[error("unknown key {key_id} of {server}")]
    UnknownKey { server: ServerName, key_id: KeyId },
    #[error("key {key_id} of {server} was not valid at the event's time")]
    KeyNotValidAt { server: ServerName, key_id: KeyId },
    #[error("bad signature by {key_id} of {server}")]
    BadSignature { server: ServerName, key_id: KeyId },
    #[error("guild create event is in stream {stream}, but its body names guild:{expected} (seq must be 1)")]
    WrongGuildStream { stream: StreamId, expected: GuildId },
}

/// Hashes with a purpose's derive-key context.
pub fn hash(context: &str, bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(bytes);
    *h.finalize().as_bytes()
}

/// The id a guild gets from its create event: the hash of creator, origin, time and nonce.
pub fn guild_id_for(body: &GuildCreated) -> Result<GuildId, CanonicalError> {
    let nonce = serde_bytes::Bytes::new(&body.nonce);
    // A DM's id covers its members too; a guild's keeps the bytes it always had.
    let bytes = match &body.dm {
        None => canonical::encode(&(&body.creator, &body.origin, body.created_at, nonce))?,
        Some(members) => canonical::encode(&(&body.creator, &body.origin, body.created_at, nonce, members))?,
    };
    let full = hash(context::GUILD_ID, &bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    Ok(GuildId::from_bytes(id))
}

/// Encodes, hashes and signs an event. The result is not verified again: this process
/// made it.
pub fn sign(unsigned: UnsignedEvent, key: &ServerKey) -> Result<SignedEvent, CanonicalError> {
    sign_proposed(unsigned, None, key)
}

/// [`sign`], carrying the seal of the proposal a remote member's hub made for it.
pub fn sign_proposed(
    unsigned: UnsignedEvent,
    proposal: Option<Seal>,
    key: &ServerKey,
) -> Result<SignedEvent, CanonicalError> {
    let body_bytes = canonical::encode(&unsigned.body)?;
    let core = EventCore {
        stream: unsigned.stream,
        seq: unsigned.seq,
        prev: unsigned.prev,
        auth: unsigned.auth,
        origin: key.server.clone(),
        sender: unsigned.sender,
        ts: unsigned.ts,
        redacted: unsigned.body.redacted(),
        content_hash: hash(context::CONTENT_HASH, &body_bytes),
        proposal,
    };
    let core_bytes = canonical::encode(&core)?;
    let id_hash = hash(context::EVENT_ID, &core_bytes);
    let id = EventId::from_hash(id_hash);
    let mut signatures = Signatures::new();
    signatures.entry(key.server.clone()).or_default().insert(key.key_id.clone(), key.sign_hash(&id_hash));
    let signature_bytes = canonical::encode(&signatures)?;
    Ok(SignedEvent {
        event: Event { id, core, body: Some(unsigned.body), signatures },
        raw: RawEvent { id, core: core_bytes, body: Some(body_bytes), signatures: signature_bytes },
    })
}

impl RawEvent {
    /// The cheap check for local reads (~1 µs): the id is the hash of the core bytes and the
    /// body matches its content hash, then decode. The bytes were canonical when this
    /// process stored them and the hashes prove they have not changed, so neither the
    /// re-encoding check nor the signatures are repeated (see [`RawEvent::decode_strict`]
    /// and [`verify`]).
    pub fn decode(&self) -> Result<Event, VerifyError> {
        self.decode_with(false)
    }

    /// The full format check for bytes from outside: the [`RawEvent::decode`] checks, and
    /// every part must be exactly its canonical encoding, and the body must reduce to the
    /// redacted form that was signed. Signatures are checked by [`verify`].
    pub fn decode_strict(&self) -> Result<Event, VerifyError> {
        self.decode_with(true)
    }

    fn decode_with(&self, strict: bool) -> Result<Event, VerifyError> {
        let actual = EventId::from_hash(hash(context::EVENT_ID, &self.core));
        if actual != self.id {
            return Err(VerifyError::BadId { claimed: self.id, actual });
        }
        let core = decode_core(&self.core, strict)?;
        if strict && core.seq == 0 {
            // In range for the integer, not for a position; the store refuses it too, but
            // a receiver computes with `seq - 1` before it gets there.
            return Err(VerifyError::ZeroSeq);
        }
        let body = match &self.body {
            None => None,
            Some(bytes) => {
                if hash(context::CONTENT_HASH, bytes) != core.content_hash {
                    return Err(VerifyError::BadContentHash);
                }
                let body = decode_body(bytes, strict)?;
                if strict && body.redacted() != core.redacted {
                    return Err(VerifyError::RedactionMismatch);
                }
                Some(body)
            }
        };
        let signatures =
            if strict { canonical::decode(&self.signatures)? } else { canonical::decode_lenient(&self.signatures)? };
        Ok(Event { id: self.id, core, body, signatures })
    }

    /// This event with its body erased: the only change ever made to a stored event.
    pub fn erased(&self) -> RawEvent {
        RawEvent { body: None, ..self.clone() }
    }
}

/// The full check, for events from outside this process and for `events verify`: the
/// [`RawEvent::decode_strict`] checks, the origin's signature with a key valid at the event's
/// time, and for a guild's create event, that the stream is named by its hash.
pub fn verify(raw: &RawEvent, keys: &KeyRing) -> Result<Event, VerifyError> {
    let event = raw.decode_strict()?;
    let origin = &event.core.origin;
    let sigs =
        event.signatures.get(origin).filter(|s| !s.is_empty()).ok_or_else(|| VerifyError::Unsigned(origin.clone()))?;
    for (key_id, sig) in sigs {
        let key = keys
            .get(origin, key_id)
            .ok_or_else(|| VerifyError::UnknownKey { server: origin.clone(), key_id: key_id.clone() })?;
        let ts = event.core.ts;
        if ts < key.valid_from || key.valid_until.is_some_and(|until| ts >= until) {
            return Err(VerifyError::KeyNotValidAt { server: origin.clone(), key_id: key_id.clone() });
        }
        let bad = || VerifyError::BadSignature { server: origin.clone(), key_id: key_id.clone() };
        let public = VerifyingKey::from_bytes(&key.public_key).map_err(|_| bad())?;
        let signature = ed25519_dalek::Signature::from_bytes(&sig.0);
        public.verify_strict(raw.id.as_bytes(), &signature).map_err(|_| bad())?;
    }
    if let EventBody::GuildCreated(created) = &event.core.redacted {
        let expected = guild_id_for(created)?;
        if event.core.stream != StreamId::Guild(expected) || event.core.seq != 1 {
            return Err(VerifyError::WrongGuildStream { stream: event.core.stream.clone(), expected });
        }
    }
    Ok(event)
}

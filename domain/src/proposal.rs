//! Proposals: how a member whose account lives on another hub acts in a guild.
//!
//! Only a guild's owner appends to its streams. A member of hub B acts through B: B decides
//! what its user asked against its copy of the guild, and signs a **proposal** — the stream,
//! the sender, the content hash of the one event body it wants, a nonce and a time — which
//! it sends to the owner with the body. The owner decides the same command as that user
//! and, if the decision gives that body, appends the event signed by itself with B's
//! **seal** (key id, nonce, time, signature) in its core. The content hash is in the core
//! too, so the seal still checks once the body is erased.
//!
//! So every replica can check, forever, that the user's own hub asked for each of its
//! user's events: the owner cannot put words in a remote user's mouth (it has no B key), and
//! B cannot put words in anyone else's (B signs only for its own users, which the owner and
//! every replica check). A seal is good once per stream within [`MAX_SKEW_MS`] of the event:
//! a replayed proposal carries a nonce the stream has seen ([`Recent`]), and an old one a
//! time too far from the event's.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::body::EventBody;
use crate::canonical::{self, CanonicalError};
pub use crate::event::Seal;
use crate::event::{EventCore, ServerKey, context, hash};
use crate::ids::{ServerName, StreamId, Timestamp, UserId};

/// How far a proposal's time may be from the event's (either way), and how long a stream
/// remembers a nonce.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// What the seal's signature covers, canonically encoded and hashed.
#[derive(Serialize)]
struct Signed<'a> {
    stream: &'a StreamId,
    sender: &'a UserId,
    #[serde(with = "canonical::bytes")]
    content_hash: &'a [u8; 32],
    #[serde(with = "canonical::bytes")]
    nonce: &'a [u8; 16],
    ts: Timestamp,
}

/// The 32 bytes a seal's signature signs.
pub fn signing_hash(
    stream: &StreamId,
    sender: &UserId,
    content_hash: &[u8; 32],
    nonce: &[u8; 16],
    ts: Timestamp,
) -> Result<[u8; 32], CanonicalError> {
    let bytes = canonical::encode(&Signed { stream, sender, content_hash, nonce, ts })?;
    Ok(hash(context::PROPOSAL, &bytes))
}

/// The content hash an event with `body` carries.
pub fn content_hash(body: &EventBody) -> Result<[u8; 32], CanonicalError> {
    Ok(hash(context::CONTENT_HASH, &canonical::encode(body)?))
}

/// Seals `body` for `stream` on behalf of `sender`, a user of `key`'s hub.
pub fn seal(
    key: &ServerKey,
    stream: &StreamId,
    sender: &UserId,
    body: &EventBody,
    nonce: [u8; 16],
    ts: Timestamp,
) -> Result<Seal, CanonicalError> {
    let signed = signing_hash(stream, sender, &content_hash(body)?, &nonce, ts)?;
    Ok(Seal { key_id: key.key_id().clone(), nonce, ts, signature: key.sign_hash(&signed) })
}

/// Why an event's seal is not good.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sender {0} lives on another hub, and the event carries no proposal of that hub")]
    Missing(UserId),
    #[error("the sender {0} lives on the hub that appended it, so the event carries no proposal")]
    Needless(UserId),
    #[error("the proposal was made {apart_ms} ms from the event; at most {MAX_SKEW_MS} ms are allowed")]
    Stale { apart_ms: u64 },
    #[error("the proposal's nonce was used before in this stream: a replay")]
    Replayed,
}

/// Checks what the domain can of an event's seal, given the nonces its stream saw: present
/// exactly when the sender lives on another hub than the event's origin, made near the
/// event's time, not seen before. The signature itself is checked by whoever holds the
/// sender hub's keys ([`signing_hash`]).
pub fn admit(core: &EventCore, recent: &Recent) -> Result<(), SealError> {
    admit_parts(&core.sender, &core.origin, core.ts, core.proposal.as_ref(), recent)
}

/// [`admit`], for an event about to be made by `origin` at `ts`.
pub fn admit_parts(
    sender: &UserId,
    origin: &ServerName,
    ts: Timestamp,
    proposal: Option<&Seal>,
    recent: &Recent,
) -> Result<(), SealError> {
    let remote = sender.server() != *origin;
    let seal = match (proposal, remote) {
        (None, false) => return Ok(()),
        (Some(_), false) => return Err(SealError::Needless(sender.clone())),
        (None, true) => return Err(SealError::Missing(sender.clone())),
        (Some(seal), true) => seal,
    };
    let apart_ms = ts.as_millis().abs_diff(seal.ts.as_millis());
    if apart_ms > MAX_SKEW_MS {
        return Err(SealError::Stale { apart_ms });
    }
    if recent.seen(&seal.nonce) {
        return Err(SealError::Replayed);
    }
    Ok(())
}

/// The nonces of the seals a stream carried within the last [`MAX_SKEW_MS`] of its events'
/// times: all a replay check needs, since an older proposal is refused for its time.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Recent {
    nonces: BTreeSet<[u8; 16]>,
    by_time: BTreeSet<(Timestamp, [u8; 16])>,
}

impl Recent {
    pub fn seen(&self, nonce: &[u8; 16]) -> bool {
        self.nonces.contains(nonce)
    }

    /// Notes an event's seal, and forgets those too old to matter next to its time: a seal
    /// made more than twice the window before an event cannot pass [`admit`] with it, nor
    /// (events' times moving on) with any later one.
    pub fn note(&mut self, core: &EventCore) {
        if let Some(seal) = &core.proposal
            && self.nonces.insert(seal.nonce)
        {
            self.by_time.insert((seal.ts, seal.nonce));
        }
        let now = core.ts.as_millis();
        while let Some(&(ts, nonce)) = self.by_time.first()
            && now.saturating_sub(ts.as_millis()) > 2 * MAX_SKEW_MS
        {
            self.by_time.pop_first();
            self.nonces.remove(&nonce);
        }
    }
}

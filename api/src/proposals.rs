//! `PUT /_openguild/federation/v1/propose/{nonce}`: a peer hub asks, for one of its own
//! users, that this hub (the guild's owner) append one event to one of its guild's streams
//! (`openguild_domain::proposal`, docs/PROTOCOL.md "Proposals").
//!
//! The request is signed as every federation request is, then, in order: the sender must
//! be a user of the requesting hub (403); the proposal must parse, its body be canonical
//! and at most 64 KiB, and its nonce be the one in the path (400); the seal must verify with
//! the requesting hub's key valid at the seal's time (403). Then the command the body names
//! is decided as for a local member (`Commands::propose`). A decision is an answer, not a
//! failure: `200` with `{"event": <the appended event, as it travels>}` or `{"refused":
//! {"code", "message", "retry_after_ms"?}}`, with the codes of the client API. A fault of
//! this hub's (its store) is `503`, for the peer to try again later. The same nonce from the
//! same peer is answered again with the first answer, without deciding again.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use openguild_domain::proposal::{self, Seal};
use openguild_domain::{EventBody, StreamId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::now;
use crate::errors::ApiError;
use crate::federation::WireEvent;
use crate::{AppState, error};

/// What a member's hub sends the guild's owner.
#[derive(Serialize, Deserialize)]
pub struct Proposal {
    /// The guild's or channel's stream, as text (`g…`, `c…`).
    pub stream: String,
    pub sender: UserId,
    /// The event body asked for: canonical MessagePack, base64.
    pub body: String,
    pub seal: Seal,
}

impl Proposal {
    /// Seals `body` on `stream` for `sender`, a user of `key`'s hub.
    pub fn new(
        key: &openguild_domain::ServerKey,
        stream: &StreamId,
        sender: &UserId,
        body: &EventBody,
        nonce: [u8; 16],
        ts: openguild_domain::Timestamp,
    ) -> Result<Proposal, openguild_domain::canonical::CanonicalError> {
        let seal = proposal::seal(key, stream, sender, body, nonce, ts)?;
        let bytes = openguild_domain::canonical::encode(body)?;
        Ok(Proposal { stream: stream.to_string(), sender: sender.clone(), body: B64.encode(bytes), seal })
    }

    /// Its nonce, in hex: its name in the path and in a queue.
    pub fn nonce_hex(&self) -> String {
        self.seal.nonce.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The path a proposal is sent to: its nonce, in hex.
    pub fn target(&self) -> String {
        format!("/_openguild/federation/v1/propose/{}", self.nonce_hex())
    }

    /// The same proposal sealed again at `ts`, with the same nonce: for one that waited in a
    /// queue longer than an owner accepts a seal's age. The nonce still makes it one act
    /// (the owner refuses it as a replay if the first try was appended after all).
    pub fn resealed(&self, key: &openguild_domain::ServerKey, ts: openguild_domain::Timestamp) -> Option<Proposal> {
        let stream: StreamId = self.stream.parse().ok()?;
        let bytes = B64.decode(self.body.trim_end_matches('=')).ok()?;
        let body: EventBody = openguild_domain::canonical::decode(&bytes).ok()?;
        Proposal::new(key, &stream, &self.sender, &body, self.seal.nonce, ts).ok()
    }
}

/// `PUT /_openguild/federation/v1/propose/{nonce}`.
pub(crate) async fn receive(
    State(api): State<AppState>,
    Path(nonce): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let origin = match api.peer_request("PUT", &uri, &headers, &body).await {
        Ok(origin) => origin,
        Err(response) => return response,
    };
    let answer_id = format!("propose/{nonce}");
    if let Some(answer) = api.federation.answer(&origin, &answer_id) {
        return Json(answer).into_response();
    }
    let invalid = |why: String| error(StatusCode::BAD_REQUEST, "INVALID_INPUT", &why);
    let proposal: Proposal = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return invalid(format!("the proposal is not {{stream, sender, body, seal}}: {e}")),
    };
    if proposal.sender.server() != origin {
        crate::metrics::federation_event_refused("sender_hub");
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            &format!(
                "{origin} proposes for {}, who is not its user; a hub speaks only for its own users",
                proposal.sender
            ),
        );
    }
    let stream: StreamId = match proposal.stream.parse() {
        Ok(s) => s,
        Err(e) => return invalid(format!("invalid stream: {e}")),
    };
    let bytes = match B64.decode(proposal.body.trim_end_matches('=')) {
        Ok(b) if b.len() <= openguild_store::DEFAULT_MAX_EVENT_BYTES => b,
        Ok(b) => {
            return invalid(format!(
                "the body is {} bytes; an event is at most {}",
                b.len(),
                openguild_store::DEFAULT_MAX_EVENT_BYTES
            ));
        }
        Err(_) => return invalid("the body is not base64".into()),
    };
    let event_body: EventBody = match openguild_domain::canonical::decode(&bytes) {
        Ok(b) => b,
        Err(e) => return invalid(format!("the body is not a canonical event body: {e}")),
    };
    let hex: String = proposal.seal.nonce.iter().map(|b| format!("{b:02x}")).collect();
    if hex != nonce {
        return invalid(format!("the path names nonce {nonce}, the seal {hex}; send the proposal to its own nonce"));
    }
    let content_hash = openguild_domain::event::hash(openguild_domain::event::context::CONTENT_HASH, &bytes);
    if let Err(why) = api.check_seal(&stream, &proposal.sender, &content_hash, &proposal.seal).await {
        crate::metrics::federation_event_refused("seal");
        return error(StatusCode::FORBIDDEN, "FORBIDDEN", &why);
    }
    let decided = api.commands.propose(&proposal.sender, &stream, &event_body, &proposal.seal, now()).await;
    let answer = match decided {
        Ok(done) => {
            let Some(made) = done.events.first() else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "the proposal wrote nothing");
            };
            match api.store.get(&made.id).await {
                Ok(Some(stored)) => json!({ "event": WireEvent::of(&stored.raw) }),
                _ => return unavailable("the event was appended but cannot be read back now; ask again"),
            }
        }
        Err(e) => {
            let refused = ApiError::from(e);
            if matches!(refused.code, "INTERNAL" | "UNAVAILABLE" | "CONFLICT") {
                return unavailable(&refused.message);
            }
            tracing::info!(peer = %origin, sender = %proposal.sender, code = refused.code, reason = %refused.message, "federation: proposal refused");
            let mut why = json!({ "code": refused.code, "message": refused.message });
            if let Some(after) = refused.retry_after {
                why["retry_after_ms"] = json!(after.as_millis() as u64);
            }
            json!({ "refused": why })
        }
    };
    api.federation.remember(origin, answer_id, answer.clone());
    Json(answer).into_response()
}

fn unavailable(why: &str) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", &format!("{why}; try the proposal again"))
}

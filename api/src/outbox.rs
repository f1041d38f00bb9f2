//! `GET /_openguild/federation/v1/outbox?since=CURSOR&limit=N`: the signed events queued for
//! the calling peer, in order, with the next cursor, for peers that prefer pulling to being
//! pushed to. A peer is recognised by a signed request (docs/PROTOCOL.md), or by a
//! configured bearer token.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, error};

#[derive(Deserialize)]
pub(crate) struct Params {
    since: Option<String>,
    limit: Option<String>,
}

const MAX_LIMIT: u32 = 500;

pub(crate) async fn pull(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let peer = if authorization.starts_with(openguild_federation::request::SCHEME) {
        let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let request = openguild_federation::request::Request { method: "GET", target, body: b"" };
        match state.authenticate_peer(Some(authorization), &request).await {
            Ok(origin) => origin.to_string(),
            Err(refusal) => return refusal,
        }
    } else {
        let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
        let Some(peer) = state.peer_tokens.get(token).cloned() else {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "sign the request (docs/PROTOCOL.md) or send the peer token you were given as `Authorization: Bearer <token>`",
            );
        };
        // A token outlives a deny: the allowlist in force decides, as for signed requests.
        let allowed = match peer.parse() {
            Ok(name) => state.peer(&name).await,
            Err(_) => Ok(None),
        };
        match allowed {
            Ok(Some(_)) => {}
            Ok(None) => {
                crate::metrics::refused("federation_request");
                return error(StatusCode::FORBIDDEN, "FORBIDDEN", &format!("{peer} is not a peer of this hub"));
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "federation: the allowlist cannot be read");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the allowlist cannot be read now; retry shortly",
                );
            }
        }
        peer
    };
    let since = match params.since.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                "`since` must be a cursor from a previous response (a number ≥ 0)",
            );
        }
    };
    let limit = match params.limit.as_deref().map(str::parse::<u32>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                &format!("`limit` must be a number from 1 to {MAX_LIMIT}"),
            );
        }
    };
    let rows = match openguild_projections::queries::outbox_page(state.projections.db(), &peer, since, limit).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "outbox read failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the outbox cannot be read right now; retry shortly",
            );
        }
    };
    let mut events = Vec::with_capacity(rows.len());
    let mut next = since;
    for (position, id) in rows {
        next = position;
        match state.store.get(&id).await {
            Ok(Some(e)) => events.push(json!({
                "cursor": position.to_string(),
                "id": e.event.id.to_string(),
                "core": B64.encode(&e.raw.core),
                "body": e.raw.body.as_ref().map(|b| B64.encode(b)),
                "signatures": B64.encode(&e.raw.signatures),
            })),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "outbox: event unreadable");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "an event could not be read; retry shortly",
                );
            }
        }
    }
    Json(json!({ "peer": peer, "events": events, "next": next.to_string() })).into_response()
}

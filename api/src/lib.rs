//! OpenGuild's HTTP face: health and readiness, the federation outbox pull, and (with the
//! GraphQL issue) queries, mutations and subscriptions.
//!
//! **Architecture invariant:** only this crate knows HTTP (and, later, GraphQL). Handlers
//! extract, call one function and map the result; no SQL or permission logic lives here
//! beyond reading a read model.

pub mod commands;
mod metrics;
mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use openguild_projections::{ProjectionState, Projections};
use openguild_store::EventStore;
use serde_json::json;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub projections: Arc<Projections>,
    /// Federation outbox pull: bearer token → the peer it authenticates.
    pub peer_tokens: Arc<HashMap<String, String>>,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/_openguild/federation/v1/outbox", get(outbox::pull))
        .with_state(state)
}

/// How far behind the store head a projection may be for the node to be ready.
const READY_LAG: u64 = 10_000;

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let head = match state.store.head_position().await {
        Ok(h) => h,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "store": e.to_string() })))
                .into_response();
        }
    };
    let projections: Vec<_> = state
        .projections
        .status()
        .into_iter()
        .map(|s| {
            let ready = !matches!(s.state, ProjectionState::Stopped { .. }) && head.saturating_sub(s.position) <= READY_LAG;
            json!({ "name": s.name, "position": s.position, "lag": head.saturating_sub(s.position), "state": format!("{:?}", s.state), "ready": ready })
        })
        .collect();
    let ready = projections.iter().all(|p| p["ready"] == true);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready, "head": head, "projections": projections }))).into_response()
}

/// A refusal with a code and a sentence saying what to do.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

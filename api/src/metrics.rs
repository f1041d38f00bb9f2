//! `GET /metrics`: Prometheus text exposition of the store head and each projection's
//! position, lag and state. A stopped projection shows as `openguild_projection_stopped 1`,
//! the metric to alert on.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openguild_projections::ProjectionState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::AppState;

type ByProjection = Family<Vec<(String, String)>, Gauge>;
type Labelled = Family<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>;

/// Refusals since start, by what was refused (`connection`, `register`, `mutation`, …): the
/// number to watch when a hub is under a flood.
static REFUSED: std::sync::LazyLock<Labelled> = std::sync::LazyLock::new(Labelled::default);

/// Counts a refusal of `what` (a connection over a cap, a rate-limited request).
pub(crate) fn refused(what: &str) {
    REFUSED.get_or_create(&vec![("what".to_owned(), what.to_owned())]).inc();
}

/// Events peers sent that were refused, by reason; transactions sent to peers, by outcome.
static FEDERATION_REFUSED: std::sync::LazyLock<Labelled> = std::sync::LazyLock::new(Labelled::default);
static FEDERATION_SENT: std::sync::LazyLock<Labelled> = std::sync::LazyLock::new(Labelled::default);

/// Counts an event a peer sent that was refused, by a short reason.
pub(crate) fn federation_event_refused(reason: &str) {
    FEDERATION_REFUSED.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
}

/// Counts a transaction sent to `peer`, answered or failed.
pub(crate) fn federation_sent(peer: &str, ok: bool) {
    let outcome = if ok { "answered" } else { "failed" };
    FEDERATION_SENT
        .get_or_create(&vec![("peer".to_owned(), peer.to_owned()), ("outcome".to_owned(), outcome.to_owned())])
        .inc();
}

/// Uploads accepted and their bytes.
static UPLOADS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);
static UPLOADED_BYTES: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Counts an accepted upload of `bytes`.
pub(crate) fn uploaded(bytes: u64) {
    UPLOADS.inc();
    UPLOADED_BYTES.inc_by(bytes);
}

/// Counts a connection refused over a connection cap.
pub(crate) fn connection_refused() {
    refused("connection");
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::with_prefix("openguild");
    let head = Gauge::<i64>::default();
    let position = ByProjection::default();
    let lag = ByProjection::default();
    let stopped = ByProjection::default();
    registry.register("store_head_position", "The last position written to the event store", head.clone());
    registry.register("projection_position", "The last position a projection applied", position.clone());
    registry.register("projection_lag", "Events a projection is behind the store head", lag.clone());
    registry.register("projection_stopped", "1 if the projection met an event it cannot apply", stopped.clone());
    registry.register("refused", "Connections and requests refused by a limit, by what", REFUSED.clone());
    registry.register("federation_events_refused", "Events from peers refused, by reason", FEDERATION_REFUSED.clone());
    registry.register(
        "federation_transactions",
        "Transactions sent to peers, by peer and outcome",
        FEDERATION_SENT.clone(),
    );
    registry.register("uploads", "Files uploaded", UPLOADS.clone());
    registry.register("uploaded_bytes", "Bytes of the files uploaded", UPLOADED_BYTES.clone());
    let queue = ByProjection::default();
    registry.register("federation_queue_depth", "Events waiting to be sent to each peer", queue.clone());
    for peer in state.allowed_peers().await.unwrap_or_default() {
        let depth = crate::sender::queue_depth(&state, &peer.name).await.unwrap_or(0);
        queue
            .get_or_create(&vec![("peer".to_owned(), peer.name.to_string())])
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    let store_head = match state.store.head_position().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: store unreachable");
            return (StatusCode::SERVICE_UNAVAILABLE, "event store unreachable\n").into_response();
        }
    };
    head.set(i64::try_from(store_head).unwrap_or(i64::MAX));
    for s in state.projections.status() {
        let labels = vec![("projection".to_owned(), s.name.to_owned())];
        position.get_or_create(&labels).set(i64::try_from(s.position).unwrap_or(i64::MAX));
        lag.get_or_create(&labels).set(i64::try_from(store_head.saturating_sub(s.position)).unwrap_or(i64::MAX));
        stopped.get_or_create(&labels).set(i64::from(matches!(s.state, ProjectionState::Stopped { .. })));
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        tracing::error!(error = %e, "metrics: encoding failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n").into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

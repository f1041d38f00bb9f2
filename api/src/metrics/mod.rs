//! `GET /metrics`: OpenMetrics text exposition of what an operator watches a hub by. Read at
//! scrape time: the store head, each projection's position, lag and state (a stopped
//! projection shows as `openguild_projection_stopped 1`, the metric to alert on), each
//! peer's federation queue, and the process's memory and open files. Recorded as they
//! happen, by the code they describe: appends ([`appends`]), GraphQL operations and errors
//! ([`graphql`]), websockets, subscriptions and live deliveries ([`live`]), refusals,
//! password hashing, federation transactions and uploads (below).
//!
//! Every name starts with `openguild_` and carries its unit (`_seconds`, `_bytes`); counters
//! end in `_total`. docs/METRICS.md lists them all.
//!
//! Recording is cheap: label values known at compile time are `&'static str`, so finding a
//! series allocates nothing, and values that come at run time (operation names, error codes)
//! are resolved once and kept, a bounded number of them ([`Bounded`]).

pub(crate) mod appends;
pub(crate) mod graphql;
pub(crate) mod live;
mod process;

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openguild_projections::ProjectionState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::AppState;

/// Series with one label whose values are written in the code: found without allocating.
type ByStatic<M> = Family<[(&'static str, &'static str); 1], M>;
/// Series with labels whose values come at run time (a peer's name, a projection's).
type ByString<M> = Family<Vec<(String, String)>, M>;

/// Refusals since start, by what was refused (`connection`, `register`, `mutation`, …): the
/// number to watch when a hub is under a flood.
static REFUSED: LazyLock<ByStatic<Counter>> =
    LazyLock::new(|| zeros("what", &["connection", "register", "mutation", "federation_request", "federation_rate"]));

/// Counts a refusal of `what` (a connection over a cap, a rate-limited request).
pub(crate) fn refused(what: &'static str) {
    REFUSED.get_or_create(&[("what", what)]).inc();
}

/// Counts a connection refused over a connection cap.
pub(crate) fn connection_refused() {
    refused("connection");
}

/// Events peers sent that were refused, by reason (those `federation` and `proposals` give;
/// one missing here is counted all the same when it happens, only not shown at 0 before);
/// transactions sent to peers, by outcome.
static FEDERATION_REFUSED: LazyLock<ByStatic<Counter>> = LazyLock::new(|| {
    let reasons = [
        "malformed",
        "too_large",
        "signature",
        "wrong_origin",
        "not_owner",
        "sender_hub",
        "seal",
        "stream",
        "gap",
        "unauthorised",
        "store",
    ];
    zeros("reason", &reasons)
});
static FEDERATION_SENT: LazyLock<ByString<Counter>> = LazyLock::new(Default::default);

/// Counts an event a peer sent that was refused, by a short reason.
pub(crate) fn federation_event_refused(reason: &'static str) {
    FEDERATION_REFUSED.get_or_create(&[("reason", reason)]).inc();
}

/// Counts a transaction sent to `peer`, answered or failed.
pub(crate) fn federation_sent(peer: &str, ok: bool) {
    let outcome = if ok { "answered" } else { "failed" };
    FEDERATION_SENT
        .get_or_create(&vec![("peer".to_owned(), peer.to_owned()), ("outcome".to_owned(), outcome.to_owned())])
        .inc();
}

/// Uploads accepted and their bytes.
static UPLOADS: LazyLock<Counter> = LazyLock::new(Default::default);
static UPLOADED_BYTES: LazyLock<Counter> = LazyLock::new(Default::default);

/// Counts an accepted upload of `bytes`.
pub(crate) fn uploaded(bytes: u64) {
    UPLOADS.inc();
    UPLOADED_BYTES.inc_by(bytes);
}

/// Password hashes (argon2id, `auth`) waiting for one of the pool's working areas, running
/// now, and run since start. Hashing is the costliest thing an anonymous caller can ask
/// for, so a queue here is the first sign of a registration or login flood.
static HASHES_WAITING: LazyLock<Gauge> = LazyLock::new(Default::default);
static HASHES_RUNNING: LazyLock<Gauge> = LazyLock::new(Default::default);
static HASHES: LazyLock<Counter> = LazyLock::new(Default::default);

/// A password hash waiting for the pool, counted until it runs or is dropped.
pub(crate) struct HashWaiting(());

/// A password hash running, counted until it is dropped.
pub(crate) struct HashRunning(());

impl HashWaiting {
    pub(crate) fn new() -> Self {
        HASHES_WAITING.inc();
        HashWaiting(())
    }

    /// The hash got its working area and runs now.
    pub(crate) fn running(self) -> HashRunning {
        drop(self);
        HASHES_RUNNING.inc();
        HASHES.inc();
        HashRunning(())
    }
}

impl Drop for HashWaiting {
    fn drop(&mut self) {
        HASHES_WAITING.dec();
    }
}

impl Drop for HashRunning {
    fn drop(&mut self) {
        HASHES_RUNNING.dec();
    }
}

/// Handles for the values of a label that come at run time (operation names, error codes):
/// each value's handle is made once and kept, so recording a value seen before takes a read
/// lock and no allocation. A client chooses operation names, so at most `cap` values are
/// kept; the rest share the handle of `other`, and the series stay bounded.
pub(crate) struct Bounded<H> {
    seen: RwLock<HashMap<Box<str>, H>>,
    cap: usize,
    make: fn(&str) -> H,
    other: std::sync::OnceLock<H>,
}

impl<H: Clone> Bounded<H> {
    pub(crate) fn new(cap: usize, make: fn(&str) -> H) -> Self {
        Self { seen: RwLock::new(HashMap::new()), cap, make, other: std::sync::OnceLock::new() }
    }

    fn other(&self) -> H {
        self.other.get_or_init(|| (self.make)("other")).clone()
    }

    /// The handle of `value` (of `other` once `cap` values are kept, or for a value longer
    /// than 64 bytes).
    pub(crate) fn get(&self, value: &str) -> H {
        {
            let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = seen.get(value) {
                return h.clone();
            }
            if seen.len() >= self.cap || value.len() > 64 {
                return self.other();
            }
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = seen.get(value) {
            return h.clone();
        }
        if seen.len() >= self.cap {
            return self.other();
        }
        let h = (self.make)(value);
        seen.insert(value.into(), h.clone());
        h
    }
}

/// Counters of one label whose values are all known, each made at once: Prometheus sees every
/// series at 0 from the first scrape, so `rate()` and an alert see the first increment too.
fn zeros(label: &'static str, values: &[&'static str]) -> ByStatic<Counter> {
    let family = ByStatic::<Counter>::default();
    for value in values {
        family.get_or_create_owned(&[(label, value)]);
    }
    family
}

/// Saturates a count into a gauge's `i64`.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::with_prefix("openguild");
    let head = Gauge::<i64>::default();
    let position = ByString::<Gauge>::default();
    let lag = ByString::<Gauge>::default();
    let stopped = ByString::<Gauge>::default();
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
    registry.register(
        "password_hashes_waiting",
        "Password hashes (argon2id) waiting for a working area of the pool",
        HASHES_WAITING.clone(),
    );
    registry.register("password_hashes_running", "Password hashes (argon2id) running now", HASHES_RUNNING.clone());
    registry.register("password_hashes", "Password hashes (argon2id) run", HASHES.clone());
    appends::register(&mut registry);
    graphql::register(&mut registry);
    live::register(&mut registry);

    let queue = ByString::<Gauge>::default();
    registry.register(
        "federation_queue_depth",
        "Events in each allowed peer's outbox that the peer has not answered yet",
        queue.clone(),
    );
    let proposals = ByString::<Gauge>::default();
    registry.register(
        "federation_proposals_queued",
        "Proposals of this hub's users waiting to be delivered to the hub that owns the guild, by that hub",
        proposals.clone(),
    );
    // Every allowed peer is shown, at 0 when nothing waits and nothing was sent yet.
    for peer in state.allowed_peers().await.unwrap_or_default() {
        let depth = crate::sender::queue_depth(&state, &peer.name).await.unwrap_or(0);
        let name = peer.name.to_string();
        queue.get_or_create(&vec![("peer".to_owned(), name.clone())]).set(gauge_value(depth));
        proposals.get_or_create(&vec![("peer".to_owned(), name.clone())]).set(0);
        for outcome in ["answered", "failed"] {
            let labels = vec![("peer".to_owned(), name.clone()), ("outcome".to_owned(), outcome.to_owned())];
            FEDERATION_SENT.get_or_create_owned(&labels);
        }
    }
    match openguild_projections::queries::queued_proposals(state.projections.db()).await {
        Ok(owners) => {
            for (owner, n) in owners {
                proposals.get_or_create(&vec![("peer".to_owned(), owner)]).set(gauge_value(n));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the proposal queue cannot be read"),
    }
    // /proc is read off the async threads: listing the open files of a busy process is a
    // walk over thousands of entries.
    if let Ok(Some(process)) = tokio::task::spawn_blocking(process::Process::read).await {
        process.register(&mut registry);
    }

    let store_head = match state.store.head_position().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: store unreachable");
            return (StatusCode::SERVICE_UNAVAILABLE, "event store unreachable\n").into_response();
        }
    };
    head.set(gauge_value(store_head));
    for s in state.projections.status() {
        let labels = vec![("projection".to_owned(), s.name.to_owned())];
        position.get_or_create(&labels).set(gauge_value(s.position));
        lag.get_or_create(&labels).set(gauge_value(store_head.saturating_sub(s.position)));
        stopped.get_or_create(&labels).set(i64::from(matches!(s.state, ProjectionState::Stopped { .. })));
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        tracing::error!(error = %e, "metrics: encoding failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n").into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn bounded_keeps_at_most_cap_values_and_sends_the_rest_to_other() {
        let seen = Bounded::new(2, |v: &str| v.to_owned());
        assert_eq!(seen.get("a"), "a");
        assert_eq!(seen.get("b"), "b");
        assert_eq!(seen.get("c"), "other", "past the cap");
        assert_eq!(seen.get("a"), "a", "a value kept stays");
        assert_eq!(seen.get(&"x".repeat(65)), "other", "too long to keep");
        assert_eq!(seen.seen.read().unwrap().len(), 2);
    }
}

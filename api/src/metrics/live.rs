//! The live side of this node (`ws`): websocket connections open, subscriptions active,
//! items delivered to subscribers, and the fan-out lag of the events among them.

use std::sync::LazyLock;

use openguild_domain::ServerName;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ByStatic;
use crate::fanout::Live;

static SOCKETS: LazyLock<Gauge> = LazyLock::new(Default::default);
static SUBSCRIPTIONS: LazyLock<Gauge> = LazyLock::new(Default::default);

/// Items written to subscribers: `event` (live from the feed), `replay` (an event a
/// subscription with `since` missed, read from the store), `typing` (a typing notice).
static DELIVERIES: LazyLock<ByStatic<Counter>> = LazyLock::new(|| super::zeros("what", &["event", "replay", "typing"]));

/// The fan-out lag, one observation per live event delivered to a subscriber: the time from
/// the event's timestamp to its payload being queued on the subscriber's socket (written by
/// the flush that ends the batch, moments later). The timestamp is the time the command that
/// wrote the event was decided, by the node that decided it, just before it was signed and
/// appended: so the lag covers the append and its commit, the store feed picking the event
/// up, the hand-over to every socket and the rendering. The store keeps no commit time, and
/// this is the earliest honest start every node can read. Only events this hub signed are
/// observed: another hub's timestamp is on another clock and includes federation's delay.
/// Replays are not observed (they are old on purpose). Across nodes, clock skew shifts it;
/// a timestamp ahead of this node's clock counts as 0. From 1 ms to 32 s.
static FANOUT_LAG: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));

/// A websocket connection open, counted until dropped.
pub(crate) struct Socket(());

impl Socket {
    pub(crate) fn open() -> Self {
        SOCKETS.inc();
        Socket(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        SOCKETS.dec();
    }
}

/// A subscription active on a socket, counted until dropped.
pub(crate) struct Subscription(());

impl Subscription {
    pub(crate) fn active() -> Self {
        SUBSCRIPTIONS.inc();
        Subscription(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        SUBSCRIPTIONS.dec();
    }
}

/// Counts `live`, just queued on a subscriber's socket (`replayed`: read from the store for
/// a subscription that resumed), and observes its fan-out lag if it is a live event `here`
/// signed.
pub(crate) fn delivered(live: &Live, replayed: bool, here: &ServerName) {
    let what = match (live, replayed) {
        (Live::Typing { .. }, _) => "typing",
        (Live::Event(_), true) => "replay",
        (Live::Event(e), false) => {
            if e.event.core.origin == *here {
                let now = crate::clock::now().as_millis();
                let lag_ms = now.saturating_sub(e.event.core.ts.as_millis());
                FANOUT_LAG.observe(lag_ms as f64 / 1000.0);
            }
            "event"
        }
    };
    DELIVERIES.get_or_create(&[("what", what)]).inc();
}

pub(super) fn register(registry: &mut Registry) {
    registry.register("websocket_connections", "Websocket connections open on this node", SOCKETS.clone());
    registry.register(
        "subscriptions_active",
        "GraphQL subscriptions active on this node's websockets",
        SUBSCRIPTIONS.clone(),
    );
    registry.register(
        "live_deliveries",
        "Items written to subscribers: live events, replayed events, typing notices",
        DELIVERIES.clone(),
    );
    registry.register(
        "fanout_lag_seconds",
        "Seconds from a live event's timestamp (its command's decision) to its delivery to a subscriber",
        FANOUT_LAG.clone(),
    );
}

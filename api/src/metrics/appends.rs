//! Appends to the event store through this node (`commands`: commands decided here, and
//! events imported from the hubs that own them): how many events of each kind, and how long
//! each append took to be durable.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ByStatic;

/// Events appended, by kind (`message.posted`, `member.joined`, …).
static APPENDED: LazyLock<ByStatic<Counter>> = LazyLock::new(Default::default);

/// Seconds from handing an append to the store to its being durable: 0.5 ms to 16 s.
static APPEND_SECONDS: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));

/// Counts the events of one append, by kind, and observes how long it took from `started`.
/// Only appends that succeeded are recorded.
pub(crate) fn appended(started: Instant, kinds: impl IntoIterator<Item = &'static str>) {
    APPEND_SECONDS.observe(started.elapsed().as_secs_f64());
    for kind in kinds {
        APPENDED.get_or_create(&[("kind", kind)]).inc();
    }
}

pub(super) fn register(registry: &mut Registry) {
    registry.register("appends", "Events appended to the event store through this node, by kind", APPENDED.clone());
    registry.register(
        "append_duration_seconds",
        "Seconds from handing an append to the event store to its being durable",
        APPEND_SECONDS.clone(),
    );
}

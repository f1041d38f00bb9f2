//! `subscribe_all` for any adapter: catch up by paging `read_all`, then follow the head
//! watch. Positions become visible in order (each adapter guarantees it), so resuming after
//! the last position seen gives no gap and no duplicate across the switch to live.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};

use crate::{EventStore, StoreError, StoredEvent};

const PAGE: usize = 512;
/// How long to wait for a wake-up before looking anyway (a missed notification, a
/// database that came back).
const POLL: Duration = Duration::from_secs(1);
/// Waits between retries while the store is unreachable, doubling up to the last.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Every event after position `after`, then every new one as it is committed. Read errors
/// are retried with backoff, and reported to the subscriber only when they say the data is
/// corrupt (a subscriber must never skip an event).
pub fn subscribe_all(store: Arc<dyn EventStore>, after: u64) -> BoxStream<'static, Result<StoredEvent, StoreError>> {
    let watch = store.head_watch();
    let state = (store, watch, after, Vec::<StoredEvent>::new().into_iter(), 0usize);
    stream::unfold(state, |(store, mut watch, mut after, mut page, mut failures)| async move {
        loop {
            if let Some(event) = page.next() {
                after = event.position;
                return Some((Ok(event), (store, watch, after, page, failures)));
            }
            // Mark the head seen before reading, so a commit after the read still wakes us.
            watch.borrow_and_update();
            match store.read_all(after, PAGE).await {
                Ok(events) if events.is_empty() => {
                    failures = 0;
                    // Either a commit wakes us, or we look again after POLL.
                    let _ = tokio::time::timeout(POLL, watch.changed()).await;
                }
                Ok(events) => {
                    failures = 0;
                    page = events.into_iter();
                }
                Err(e @ StoreError::Corrupt { .. }) => return Some((Err(e), (store, watch, after, page, failures))),
                Err(StoreError::Closed) => return None,
                Err(e) => {
                    let wait = BACKOFF.get(failures).copied().unwrap_or(Duration::from_secs(2));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "event subscription: read failed, retrying");
                    failures += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    })
    .boxed()
}

//! The federation sender: for each peer with a URL, one task pushes the peer's outbox (the
//! `federation_outbox` projection) as signed transactions of at most 50 events, one in flight
//! at a time. Its position is durable (`worker_checkpoints`, `federation:<peer>`) and moves
//! only past a transaction the peer answered, so a restart or `kill -9` resumes where it
//! was: nothing is skipped, and a transaction sent again has the same id (a hash of origin,
//! destination and the positions it carries), which the peer answers without processing
//! again. Only events this hub signed go out: the outbox also lists the copies this hub
//! holds of a peer's guild, and those reach other hubs from their owner. An idle task waits
//! for the outbox read model to move. On PostgreSQL with several nodes, the task that sends
//! holds the peer's lease (`projections::lease`); the other nodes' tasks stand by.
//!
//! A peer that lacks the start of a stream answers "stream at seq N" for its events; the
//! sender then pushes that stream's events from N + 1 first (from its own store) and tries
//! again. Failures back off exponentially with jitter, up to `[federation] retry_max_seconds`
//! (a minute unless configured), so a peer that comes back after a partition gets its queue
//! within that pause; an answer other than 2xx counts as a failure and is logged.
//!
//! The tasks follow the allowlist in force (`Api::allowed_peers`): a supervisor starts a task
//! for each allowed peer with a URL, and stops the task of a peer denied, or moved to another
//! URL, whenever a `hub.peer_allowed` or `hub.peer_denied` passes on the live feed. A task
//! also checks before each transaction that its peer is still allowed at its URL, so nothing
//! more is sent to a denied peer even before the supervisor has woken.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openguild_domain::{EventBody, EventId, ServerName, StreamId};
use openguild_projections::lease::Lease;
use openguild_projections::queries;
use openguild_store::{Direction, StoredEvent};
use serde_json::Value;

use crate::Api;
use crate::clock::now;
use crate::commands::random16;
use crate::errors::ApiError;
use crate::federation::{MAX_EVENTS, WireEvent};

/// The longest pause between failed tries unless configured.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);
/// The outbox read model the senders follow.
const OUTBOX: &str = "federation_outbox";
/// How often a sender on standby tries for its peer's lease, and how often the sender that
/// holds it checks that it still does.
const STANDBY: Duration = Duration::from_secs(2);

/// How many log positions an outbox page may span, per event it holds, to be read as one
/// range of the log rather than event by event.
const DENSE: usize = 4;

/// How often the supervisor looks at the allowlist when no hub event woke it: a safety net,
/// and how soon it notices that the API is gone.
const RECHECK: Duration = Duration::from_secs(10);

/// Starts the supervisor, which keeps one sender per allowed peer with a URL.
pub(crate) fn start(api: &Arc<Api>) {
    let weak = Arc::downgrade(api);
    let mut feed = api.fanout.subscribe();
    tokio::spawn(async move {
        let mut tasks: BTreeMap<ServerName, (String, tokio::task::JoinHandle<()>)> = BTreeMap::new();
        loop {
            let Some(api) = weak.upgrade() else { break };
            match api.allowed_peers().await {
                Ok(peers) => {
                    let wanted: BTreeMap<ServerName, String> =
                        peers.into_iter().filter_map(|p| Some((p.name, p.url?))).collect();
                    tasks.retain(|name, (url, task)| {
                        let keep = wanted.get(name) == Some(url) && !task.is_finished();
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for (name, url) in wanted {
                        if let std::collections::btree_map::Entry::Vacant(slot) = tasks.entry(name) {
                            let name = slot.key().clone();
                            tracing::info!(peer = %name, %url, "federation: sending to the peer");
                            let task = tokio::spawn(run(weak.clone(), name, url.clone()));
                            slot.insert((url, task));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e.message, "federation: the allowlist cannot be read; will retry"),
            }
            drop(api);
            if !allowlist_moved(&mut feed).await {
                break;
            }
        }
        for (_, (_, task)) in tasks {
            task.abort();
        }
    });
}

/// Waits until the allowlist may have changed: a peer event on the live feed (the hub
/// aggregate has moved by the time the feed hands it on), a lag, or [`RECHECK`]. False once
/// the feed is closed.
async fn allowlist_moved(feed: &mut tokio::sync::broadcast::Receiver<Arc<crate::fanout::Live>>) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    let deadline = tokio::time::Instant::now() + RECHECK;
    loop {
        match tokio::time::timeout_at(deadline, feed.recv()).await {
            Ok(Ok(live)) => {
                if let crate::fanout::Live::Event(e) = &*live
                    && matches!(e.event.content(), EventBody::PeerAllowed { .. } | EventBody::PeerDenied { .. })
                {
                    return true;
                }
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => return true,
            Ok(Err(RecvError::Closed)) => return false,
        }
    }
}

/// The name of `peer`'s sender position in `worker_checkpoints`.
pub fn checkpoint(peer: &ServerName) -> String {
    format!("federation:{peer}")
}

/// How many events wait for `peer`: its outbox after what it has answered.
pub(crate) async fn queue_depth(api: &Api, peer: &ServerName) -> Result<u64, ApiError> {
    let db = api.projections.db();
    let sent = queries::worker_position(db, &checkpoint(peer)).await?;
    Ok(queries::outbox_depth(db, peer.as_str(), sent).await?)
}

async fn run(api: Weak<Api>, peer: ServerName, url: String) {
    let checkpoint = checkpoint(&peer);
    let mut failures = 0u32;
    // On PostgreSQL with several nodes, one node sends to each peer (as one runs each
    // projection); the others stand by and take over when its lease goes.
    let mut lease: Option<(Lease, tokio::time::Instant)> = None;
    loop {
        let Some(strong) = api.upgrade() else { return };
        // Denied, or moved to another URL: this task is done (the supervisor starts another).
        match strong.peer(&peer).await {
            Ok(Some(p)) if p.url.as_deref() == Some(url.as_str()) => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e.message, "federation: the allowlist cannot be read; will retry");
                drop(strong);
                tokio::time::sleep(backoff(1, DEFAULT_RETRY_MAX)).await;
                continue;
            }
        }
        let db = strong.projections.db().clone();
        if lease.is_none() {
            match Lease::try_take(&db, &checkpoint).await {
                Ok(Some(taken)) => lease = Some((taken, tokio::time::Instant::now())),
                Ok(None) => {
                    drop(strong);
                    tokio::time::sleep(STANDBY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "federation: the sender's lease cannot be taken; will retry");
                    drop(strong);
                    tokio::time::sleep(backoff(1, DEFAULT_RETRY_MAX)).await;
                    continue;
                }
            }
        }
        let seen = strong.outbox_position();
        let outcome = strong.send_next(&peer, &url, &checkpoint).await;
        let retry_max = strong.federation.retry_max();
        match outcome {
            Ok(Step::Sent) => {
                failures = 0;
                let _ = queries::peer_succeeded(&db, peer.as_str(), now().as_millis()).await;
            }
            Ok(Step::Passed) => {}
            Ok(Step::Idle) => {
                failures = 0;
                // Nothing queued: wait until the outbox moves past what was read (or a second).
                strong.outbox_past(seen).await;
                if let Some((held, checked)) = lease.as_mut()
                    && checked.elapsed() >= STANDBY
                {
                    *checked = tokio::time::Instant::now();
                    if !held.holds().await {
                        tracing::warn!(%peer, "federation: the sender lost its lease; standing by");
                        lease = None;
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = backoff(failures, retry_max);
                let pause_ms = pause.as_millis() as u64;
                tracing::warn!(%peer, error = %e.message, retry_in_ms = pause_ms, "federation: sending failed");
                let _ = queries::peer_failed(&db, peer.as_str(), now().as_millis(), &e.message, pause_ms).await;
                drop(strong);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// What one turn of a sender did.
enum Step {
    /// A transaction went out and was answered.
    Sent,
    /// The next page held nothing this hub signed; the position moved past it.
    Passed,
    /// Nothing is queued.
    Idle,
}

/// A random pause between half and all of 250 ms × 2^failures, the ceiling at most `max`
/// (jitter, so peers that failed together do not retry together).
pub(crate) fn backoff(failures: u32, max: Duration) -> Duration {
    let max_ms = (max.as_millis() as u64).max(1);
    let ceiling_ms = 250u64.saturating_mul(1 << failures.min(16)).min(max_ms);
    let r = random16();
    let roll = u64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]]));
    Duration::from_millis(ceiling_ms / 2 + roll % (ceiling_ms - ceiling_ms / 2).max(1))
}

impl Api {
    /// Where the `federation_outbox` read model stands.
    fn outbox_position(&self) -> u64 {
        self.projections.status().iter().find(|s| s.name == OUTBOX).map_or(0, |s| s.position)
    }

    /// Waits until the outbox has applied an event after `seen`, at most a second.
    async fn outbox_past(&self, seen: u64) {
        let _ = self.projections.wait_for(&[OUTBOX], seen + 1, Duration::from_secs(1)).await;
    }

    /// Sends the next transaction of `peer`'s outbox, if there is one.
    async fn send_next(&self, peer: &ServerName, url: &str, checkpoint: &str) -> Result<Step, ApiError> {
        let db = self.projections.db();
        let since = queries::worker_position(db, checkpoint).await?;
        let page = queries::outbox_page(db, peer.as_str(), since, MAX_EVENTS as u32).await?;
        let Some(&(last, _)) = page.last() else { return Ok(Step::Idle) };
        // Only what this hub signed: a replica's queue also lists the owner's events of the
        // guilds it holds, which the owner (or any peer) would refuse from us as relayed.
        let events: Vec<StoredEvent> =
            self.stored(&page).await?.into_iter().filter(|e| e.event.core.origin == self.server).collect();
        if events.is_empty() {
            queries::set_worker_position(db, checkpoint, last).await?;
            return Ok(Step::Passed);
        }
        let txn_id = txn_id(&self.server, peer, since, last);
        let answer = self.put_transaction(peer, url, &txn_id, &events).await?;
        // Events the peer could not place: push their streams' missing starts, then this again.
        let mut gaps: Vec<(StreamId, u64, u64)> = Vec::new();
        for e in &events {
            let result = &answer["events"][e.event.id.to_string()];
            if let Some(at) = result["stream_at"].as_u64()
                && at + 1 < e.event.core.seq
                && !gaps.iter().any(|(s, _, _)| *s == e.event.core.stream)
            {
                gaps.push((e.event.core.stream.clone(), at + 1, e.event.core.seq - 1));
            } else if let Some(why) = result["refused"].as_str() {
                tracing::warn!(%peer, event = %e.event.id, reason = why, "federation: the peer refused an event");
            }
        }
        if !gaps.is_empty() {
            for (stream, from, to) in gaps {
                self.backfill(peer, url, &stream, from, to).await?;
            }
            // The same transaction again: the peer answers it afresh under a new id.
            let retry = format!("{txn_id}.{}", hex(&random16()[..4]));
            self.put_transaction(peer, url, &retry, &events).await?;
        }
        queries::set_worker_position(db, checkpoint, last).await?;
        Ok(Step::Sent)
    }

    /// Pushes events `from..=to` of `stream` to `peer`, in transactions.
    async fn backfill(
        &self,
        peer: &ServerName,
        url: &str,
        stream: &StreamId,
        from: u64,
        to: u64,
    ) -> Result<(), ApiError> {
        let mut next = from;
        while next <= to {
            let limit = (to - next + 1).min(MAX_EVENTS as u64) as usize;
            let page = self.store.read_stream(stream, next, limit, Direction::Forward).await?;
            let Some(last) = page.last().map(|e| e.event.core.seq) else { break };
            let txn_id = format!("backfill.{}.{next}.{last}", hex(&self.server_hash(peer, stream)));
            self.put_transaction(peer, url, &txn_id, &page).await?;
            next = last + 1;
        }
        Ok(())
    }

    fn server_hash(&self, peer: &ServerName, stream: &StreamId) -> [u8; 8] {
        let h = openguild_domain::event::hash(
            "openguild 2026-12 federation backfill",
            format!("{} {peer} {stream}", self.server).as_bytes(),
        );
        let mut out = [0u8; 8];
        out.copy_from_slice(&h[..8]);
        out
    }

    /// The stored events of an outbox page, `(position, id)` in position order. A page whose
    /// positions lie close together (a guild's burst, a catch-up) is one range read of the
    /// log; a sparse one is read event by event, so a quiet peer's page never reads much
    /// more than it holds.
    async fn stored(&self, page: &[(u64, EventId)]) -> Result<Vec<StoredEvent>, ApiError> {
        let (Some(&(first, _)), Some(&(last, _))) = (page.first(), page.last()) else { return Ok(Vec::new()) };
        let span = (last - first + 1) as usize;
        if span <= DENSE * page.len() {
            let wanted: std::collections::HashSet<EventId> = page.iter().map(|(_, id)| *id).collect();
            let mut run = self.store.read_all(first - 1, span).await?;
            run.retain(|e| wanted.contains(&e.event.id));
            return Ok(run);
        }
        let mut out = Vec::with_capacity(page.len());
        for (_, id) in page {
            if let Some(e) = self.store.get(id).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// PUTs one signed transaction; the peer's answer, or why it failed.
    async fn put_transaction(
        &self,
        peer: &ServerName,
        url: &str,
        txn_id: &str,
        events: &[StoredEvent],
    ) -> Result<Value, ApiError> {
        let wire: Vec<WireEvent> = events.iter().map(|e| WireEvent::of(&e.raw)).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "events": wire, "notices": [] }))
            .map_err(|e| ApiError::internal(format!("encoding a transaction: {e}")))?;
        let target = format!("/_openguild/federation/v1/send/{txn_id}");
        let request = openguild_federation::request::Request { method: "PUT", target: &target, body: &body };
        let authorization = openguild_federation::request::authorization(self.commands.key(), peer, &request, now());
        let response = self
            .federation
            .http()
            .put(format!("{url}{target}"))
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                crate::metrics::federation_sent(peer.as_str(), false);
                ApiError::new("UNAVAILABLE", format!("{peer} is unreachable: {e}"))
            })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        crate::metrics::federation_sent(peer.as_str(), status.is_success());
        if !status.is_success() {
            return Err(ApiError::new("UNAVAILABLE", format!("{peer} answered {status}: {answer}")));
        }
        Ok(answer)
    }
}

/// A transaction's id: the same for the same origin, destination and positions.
fn txn_id(origin: &ServerName, peer: &ServerName, since: u64, last: u64) -> String {
    let h = openguild_domain::event::hash(
        "openguild 2026-12 federation transaction id",
        format!("{origin} {peer} {since} {last}").as_bytes(),
    );
    hex(&h[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_from_a_quarter_second_and_never_passes_its_cap() {
        for _ in 0..200 {
            let first = backoff(1, DEFAULT_RETRY_MAX);
            assert!((250..500).contains(&first.as_millis()), "{first:?}");
            for failures in [9, 20, 1_000, u32::MAX] {
                let late = backoff(failures, DEFAULT_RETRY_MAX);
                assert!((30_000..60_000).contains(&late.as_millis()), "{failures}: {late:?}");
                let capped = backoff(failures, Duration::from_secs(3));
                assert!((1_500..3_000).contains(&capped.as_millis()), "{failures}: {capped:?}");
            }
        }
    }
}

//! What both adapters do alike: checking an append against the stream's state, and the
//! request a caller hands to the group-commit writer.

use openguild_domain::event::SignedEvent;
use openguild_domain::{EventId, StreamId};
use tokio::sync::oneshot;

use crate::{AppendResult, ExpectedVersion, StoreError};

/// The default limit on one event's size (core + body + signatures).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

/// One caller's append, queued for the writer.
pub(crate) struct Request {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<SignedEvent>,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Checks an append's shape and hands it to a group-commit writer's queue (`wrap` makes it
/// the writer's job): what answers it once committed.
pub(crate) async fn enqueue<J>(
    jobs: &tokio::sync::mpsc::Sender<J>,
    wrap: impl FnOnce(Request) -> J,
    (stream, expected, events): (&StreamId, ExpectedVersion, Vec<SignedEvent>),
    max_bytes: usize,
) -> Result<crate::Queued, StoreError> {
    check_shape(stream, &events, max_bytes)?;
    let (reply, rx) = oneshot::channel();
    jobs.send(wrap(Request { stream: stream.clone(), expected, events, reply }))
        .await
        .map_err(|_| StoreError::Closed)?;
    Ok(crate::Queued::writer(rx))
}

/// Takes what the writer commits together: `first` and every append already queued
/// behind it, up to `max_events` events. Any other job ends the batch, and is returned to
/// run after it (so it sees the appends queued before it).
pub(crate) fn gather<J>(
    first: J,
    jobs: &mut tokio::sync::mpsc::Receiver<J>,
    max_events: usize,
    append: impl Fn(J) -> Result<Request, J>,
) -> (Vec<Request>, Option<J>) {
    let mut batch = Vec::new();
    let mut count = 0;
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match append(job) {
            Ok(r) => {
                count += r.events.len();
                batch.push(r);
            }
            Err(other) => return (batch, Some(other)),
        }
        if count < max_events {
            next = jobs.try_recv().ok();
        }
    }
    (batch, None)
}

/// A stream's last event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    pub seq: u64,
    pub id: EventId,
}

/// Checks what needs no database: one stream, consecutive seqs, `prev` links inside the
/// batch, sizes.
pub(crate) fn check_shape(stream: &StreamId, events: &[SignedEvent], max_bytes: usize) -> Result<(), StoreError> {
    let invalid = |why: String| Err(StoreError::InvalidAppend(why));
    if events.is_empty() {
        return invalid("no events to append".into());
    }
    let mut previous: Option<&SignedEvent> = None;
    for e in events {
        let core = &e.event.core;
        if core.stream != *stream {
            return invalid(format!("event {} belongs to {}, not {stream}", e.event.id, core.stream));
        }
        let size = e.raw.core.len() + e.raw.body.as_ref().map_or(0, Vec::len) + e.raw.signatures.len();
        if size > max_bytes {
            return Err(StoreError::TooLarge { id: e.event.id, size, limit: max_bytes });
        }
        if core.seq == 0 {
            return invalid(format!("event {} has seq 0; seqs start at 1", e.event.id));
        }
        if let Some(p) = previous
            && (core.seq != p.event.core.seq + 1 || core.prev != [p.event.id])
        {
            return invalid(format!("event {} does not follow {} (seq and prev must chain)", e.event.id, p.event.id));
        }
        previous = Some(e);
    }
    Ok(())
}

/// What to do with an append, given which of its ids are already stored and the stream's
/// head: nothing (it was already written), or write the events from `skip` on.
pub(crate) enum Plan {
    AlreadyStored(AppendResult),
    Write { skip: usize },
}

/// Decides an append against the stream's state. `stored` holds the positions of the
/// batch's events that are already in the store (same order, `None` where absent).
pub(crate) fn plan(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[SignedEvent],
    stored: &[Option<u64>],
    head: Option<Head>,
) -> Result<Plan, StoreError> {
    let present = stored.iter().take_while(|p| p.is_some()).count();
    if stored.iter().skip(present).any(Option::is_some) {
        return Err(StoreError::InvalidAppend(
            "some of these events are stored and others are not, out of order".into(),
        ));
    }
    let version = head.map_or(0, |h| h.seq);
    if present == events.len() {
        // A repeated append: success, nothing written.
        return Ok(Plan::AlreadyStored(AppendResult {
            positions: stored.iter().flatten().copied().collect(),
            version,
        }));
    }
    let conflict = || StoreError::Conflict { stream: stream.clone(), expected, actual: head.map(|h| h.seq) };
    if present == 0 {
        let starts = events.first().map_or(0, |e| e.event.core.seq);
        let implied = match expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(v),
            ExpectedVersion::Any => None,
        };
        if let Some(v) = implied.filter(|v| starts != v + 1) {
            return Err(StoreError::InvalidAppend(format!(
                "the events start at seq {starts}, but the expected version {expected:?} means they should start at {}",
                v + 1
            )));
        }
        match expected {
            ExpectedVersion::NoStream if head.is_some() => return Err(conflict()),
            ExpectedVersion::Exact(v) if v != version => return Err(conflict()),
            _ => {}
        }
    }
    let first = events.get(present).map(|e| &e.event.core).ok_or_else(conflict)?;
    let expected_prev: Vec<EventId> = head.map(|h| h.id).into_iter().collect();
    if first.seq != version + 1 || first.prev != expected_prev {
        // Signed for another version of the stream: the caller must decide again.
        return Err(conflict());
    }
    Ok(Plan::Write { skip: present })
}

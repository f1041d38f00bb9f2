//! KurrentDB (formerly EventStoreDB): the event store as a KurrentDB database, through its
//! gRPC client (the `eventstore` crate). Only built with the `kurrentdb` feature.
//!
//! **Untested against a server.** No KurrentDB server could be installed where this adapter
//! was written, so it compiles, lints clean and its pure parts (framing, ids, URLs) are unit
//! tested, but the conformance suite has not run against it. Run it before relying on it:
//! `OPENGUILD_TEST_KURRENTDB_URL=esdb://admin:changeit@127.0.0.1:2113?tls=false cargo nextest
//! run -p openguild-store --all-features kurrentdb`. It needs EventStoreDB 22.6 or later (or
//! any KurrentDB): older servers do not report an event's `$all` position on stream reads,
//! and the adapter says so instead of guessing.
//!
//! The mapping:
//!
//! - A stream is the KurrentDB stream named by the text form of its id (`channel:…`), after
//!   an optional prefix (`?streamPrefix=…` in the URL) that gives several stores their own
//!   namespace on one server; the tests use it. The database, or the prefix, must belong to
//!   OpenGuild alone: every non-system event under it is read as one of ours.
//! - An event is one binary KurrentDB event (`application/octet-stream`, type = the body's
//!   kind) whose data frames our stored bytes untouched: a version byte, the 32-byte event
//!   id, then the core, the body (after a presence flag) and the signatures, each with a
//!   big-endian u32 length. The id is kept so that reads check the core against the id it
//!   was written with, as the other adapters do with their id column.
//! - The KurrentDB event id is the first 16 bytes of ours as a version 8 UUID, so a retried
//!   append carries the same ids and KurrentDB recognises it.
//! - Expected versions are always explicit revisions (ours are 1-based, KurrentDB's 0-based),
//!   because KurrentDB only deduplicates retried appends that name one. Every append first
//!   reads the stream's last event, checks the batch continues it (seq and `prev`, as the
//!   SQL adapters do), then appends expecting exactly that revision. `Any` is resolved the
//!   same way. After the append it reads the events back for their positions: three round
//!   trips per append.
//! - A global position is the event's commit position in `$all`. For events written by one
//!   gRPC append (never an explicit transaction) it is also the record's own log position,
//!   so it is distinct per event and grows in `$all` order. `read_all` reads `$all` forward
//!   and keeps our events, skipping system events and other namespaces on the client (the
//!   client offers no server-side filter for reads), so a namespace on a busy shared server
//!   pays for reading the others' events too, and an idle `subscribe_all` re-reads what was
//!   written after its last event at every poll.
//! - `head_watch` follows a filtered catch-up subscription to `$all` from its end in a
//!   background task, reconnecting with backoff; `subscribe_all` polls anyway.
//! - `get` scans `$all` backwards, as KurrentDB has no index by event id: its cost grows
//!   with the number of events written after the one looked for. So does `head_position`
//!   on a namespace that has written little lately.
//! - `erase_body` is not supported: KurrentDB never changes a stored event, and removing the
//!   bytes for real means truncating or deleting the stream and scavenging the database,
//!   which takes every other event of the stream with it. It returns an error saying so.
//!   Use the SQLite or PostgreSQL store where bodies must be erasable.
//!
//! Reading `$all` needs a user allowed to (by default, an administrator): give the
//! credentials in the URL.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, ClientSettingsParseError, EventData, ExpectedRevision, Position,
    ReadAllOptions, ReadStream, ReadStreamOptions, RecordedEvent, StreamPosition, SubscribeToAllOptions,
    SubscriptionEvent, SubscriptionFilter,
};
use openguild_domain::canonical::CanonicalError;
use openguild_domain::event::{RawEvent, SignedEvent, VerifyError};
use openguild_domain::{EventId, StreamId};
use tokio::sync::{RwLock, watch};
use tokio::task::AbortHandle;

use crate::batch::{self, Head, Plan};
use crate::{
    AppendResult, Direction, EventStore, ExpectedVersion, Options, Queued, StoreError, StoredEvent, decode_row,
};

/// Events asked for per request while scanning `$all`.
const PAGE: usize = 512;
/// Appends that lose a race between reading the head and appending try again this often:
/// the next try usually finds the batch already stored (a retry) or reports the conflict.
const ATTEMPTS: usize = 3;
/// The URL parameter that names the stream prefix (ours; the client never sees it).
const PREFIX_PARAM: &str = "streamPrefix";
/// The first byte of an event's data: the framing's version.
const FRAME_VERSION: u8 = 1;

const NO_POSITION: &str = "the KurrentDB server did not report the $all position of an event read from its stream; \
     the adapter needs EventStoreDB 22.6 or later, or KurrentDB";
const ERASE_UNSUPPORTED: &str = "erase_body is not supported by the KurrentDB adapter: KurrentDB never changes a \
     stored event, and removing the bytes for real means truncating or deleting the stream and scavenging the \
     database, which would take every other event of the stream with it. Use the SQLite or PostgreSQL store \
     where bodies must be erasable.";

/// The KurrentDB adapter (see the module docs for what it maps how).
pub struct KurrentStore {
    client: Client,
    prefix: String,
    options: Options,
    head: watch::Receiver<u64>,
    head_tx: watch::Sender<u64>,
    watcher: AbortHandle,
    /// Appends hold it shared for their whole length; `close` takes it exclusively, so it
    /// waits for them, and sets it, so later calls are refused.
    closed: RwLock<bool>,
}

impl KurrentStore {
    /// Connects (`esdb://`, `esdb+discover://`, `kurrentdb://` or `kurrentdb+discover://`,
    /// with the client's usual parameters and our `streamPrefix`), checks the server answers,
    /// and starts following the head.
    pub async fn open(url: &str, options: Options) -> Result<Self, StoreError> {
        let fail = |why: String| StoreError::Open(format!("cannot open the KurrentDB event store: {why}"));
        let (url, prefix) = split_url(url).map_err(fail)?;
        let settings: ClientSettings = url.parse().map_err(|e: ClientSettingsParseError| fail(e.to_string()))?;
        let client = Client::new(settings).map_err(|e| fail(e.to_string()))?;
        // The client connects lazily: one small read shows the server is there and lets us
        // read `$all`.
        let probe = ReadAllOptions::default().position(StreamPosition::End).max_count(1);
        collect(client.read_all(&probe).await)
            .await
            .map_err(|e| fail(format!("{e} (is KurrentDB running, and the URL and its credentials right?)")))?;
        let (head_tx, head) = watch::channel(0);
        let watcher = tokio::spawn(follow_head(client.clone(), prefix.clone(), head_tx.clone())).abort_handle();
        Ok(Self { client, prefix, options, head, head_tx, watcher, closed: RwLock::new(false) })
    }

    fn stream_name(&self, stream: &StreamId) -> String {
        format!("{}{stream}", self.prefix)
    }

    async fn check_open(&self) -> Result<(), StoreError> {
        if *self.closed.read().await { Err(StoreError::Closed) } else { Ok(()) }
    }

    /// Reads one of our events back, checking it as the other adapters do, and that it sits
    /// where its core says.
    fn to_stored(&self, record: &RecordedEvent) -> Result<StoredEvent, StoreError> {
        let position = record.position.commit;
        if position == u64::MAX {
            return Err(StoreError::Open(NO_POSITION.into()));
        }
        let raw = unframe(&record.data).map_err(|why| {
            corrupt(position, format!("{}@{} is not an OpenGuild event: {why}", record.stream_id, record.revision))
        })?;
        if record.id != kurrent_id(&raw.id) {
            return Err(corrupt(
                position,
                format!("the KurrentDB event id {} is not derived from the event id {}", record.id, raw.id),
            ));
        }
        let stored = decode_row(position, raw)?;
        let core = &stored.event.core;
        if self.stream_name(&core.stream) != record.stream_id || core.seq.checked_sub(1) != Some(record.revision) {
            return Err(corrupt(
                position,
                format!(
                    "event {} is seq {} of {}, but KurrentDB holds it at {}@{}",
                    stored.event.id, core.seq, core.stream, record.stream_id, record.revision
                ),
            ));
        }
        Ok(stored)
    }

    async fn read_records(&self, name: &str, options: &ReadStreamOptions) -> Result<Vec<RecordedEvent>, StoreError> {
        collect(self.client.read_stream(name, options).await).await.map_err(|e| failed("stream read", e))
    }

    /// The stream's last event, if it has one.
    async fn last_event(&self, name: &str) -> Result<Option<StoredEvent>, StoreError> {
        let options = ReadStreamOptions::default().position(StreamPosition::End).backwards().max_count(1);
        let records = self.read_records(name, &options).await?;
        records.first().map(|r| self.to_stored(r)).transpose()
    }

    /// The positions of the batch's events that the stream already holds (same order, `None`
    /// where absent). An event can only be at the revision its seq names, so this reads
    /// that range and compares ids.
    async fn find_stored(&self, name: &str, events: &[SignedEvent]) -> Result<Vec<Option<u64>>, StoreError> {
        let Some(first) = events.first() else { return Ok(Vec::new()) };
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(first.event.core.seq.saturating_sub(1)))
            .forwards()
            .max_count(events.len());
        let records = self.read_records(name, &options).await?;
        let mut found = Vec::with_capacity(events.len());
        for e in events {
            let record = records.iter().find(|r| Some(r.revision) == e.event.core.seq.checked_sub(1));
            let position = match record.filter(|r| r.id == kurrent_id(&e.event.id)) {
                Some(r) => Some(self.to_stored(r)?).filter(|s| s.event.id == e.event.id).map(|s| s.position),
                None => None,
            };
            found.push(position);
        }
        Ok(found)
    }

    /// One try at an append: `Ok(None)` if another writer moved the stream between our read
    /// of its head and our append.
    async fn try_append(
        &self,
        stream: &StreamId,
        name: &str,
        expected: ExpectedVersion,
        events: &[SignedEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let last = self.last_event(name).await?;
        let head = last.as_ref().map(|e| Head { seq: e.event.core.seq, id: e.event.id });
        let planned = match batch::plan(stream, expected, events, &vec![None; events.len()], head) {
            Err(StoreError::Conflict { .. }) => {
                let stored = self.find_stored(name, events).await?;
                batch::plan(stream, expected, events, &stored, head)
            }
            other => other,
        };
        let skip = match planned? {
            Plan::AlreadyStored(result) => return Ok(Some(result)),
            Plan::Write { skip } => skip,
        };
        // Always an explicit revision: the head we checked the batch against.
        let revision = head.map_or(ExpectedRevision::NoStream, |h| ExpectedRevision::Exact(h.seq.saturating_sub(1)));
        let data = events.iter().skip(skip).map(event_data).collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().expected_revision(revision);
        match self.client.append_to_stream(name, &options, data).await {
            Ok(_) => {}
            Err(eventstore::Error::WrongExpectedVersion { .. }) => return Ok(None),
            Err(e) => return Err(failed("append", e)),
        }
        // Written (or found written by KurrentDB's own retry check): read back the positions.
        let positions: Option<Vec<u64>> = self.find_stored(name, events).await?.into_iter().collect();
        let positions = positions.ok_or_else(|| {
            StoreError::Open(format!("KurrentDB acknowledged an append to {name} but does not hold its events"))
        })?;
        let version = events.last().map_or(0, |e| e.event.core.seq);
        Ok(Some(AppendResult { positions, version }))
    }
}

impl Drop for KurrentStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl KurrentStore {
    async fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<SignedEvent>,
    ) -> Result<AppendResult, StoreError> {
        let closed = self.closed.read().await;
        if *closed {
            return Err(StoreError::Closed);
        }
        batch::check_shape(stream, &events, self.options.max_event_bytes)?;
        let name = self.stream_name(stream);
        for _ in 0..ATTEMPTS {
            if let Some(result) = self.try_append(stream, &name, expected, &events).await? {
                if let Some(&last) = result.positions.last() {
                    raise(&self.head_tx, last);
                }
                return Ok(result);
            }
        }
        let actual = self.last_event(&name).await?.map(|e| e.event.core.seq);
        Err(StoreError::Conflict { stream: stream.clone(), expected, actual })
    }
}

#[async_trait]
impl EventStore for KurrentStore {
    /// KurrentDB takes appends one by one: this one is done when it returns.
    async fn queue(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<SignedEvent>,
    ) -> Result<Queued, StoreError> {
        Ok(Queued::ready(self.append_now(stream, expected, events).await))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_seq: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.check_open().await?;
        let name = self.stream_name(stream);
        let options = ReadStreamOptions::default().max_count(limit);
        let records = match direction {
            _ if limit == 0 => Vec::new(),
            Direction::Forward => {
                let from = StreamPosition::Position(from_seq.saturating_sub(1));
                self.read_records(&name, &options.position(from).forwards()).await?
            }
            Direction::Backward if from_seq == 0 => Vec::new(),
            Direction::Backward if from_seq == u64::MAX => {
                self.read_records(&name, &options.position(StreamPosition::End).backwards()).await?
            }
            Direction::Backward => {
                let revision = from_seq - 1;
                let from = StreamPosition::Position(revision);
                let records = self.read_records(&name, &options.clone().position(from).backwards()).await?;
                if records.is_empty() {
                    // Past the end of the stream: read back from its end instead.
                    let from_end = options.position(StreamPosition::End).backwards();
                    let records = self.read_records(&name, &from_end).await?;
                    records.into_iter().filter(|r| r.revision <= revision).collect()
                } else {
                    records
                }
            }
        };
        records.iter().map(|r| self.to_stored(r)).collect()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.check_open().await?;
        let mut events = Vec::new();
        let mut cursor = after;
        while events.len() < limit {
            // Reading `$all` from a position includes the event there: it is skipped below.
            let from = match cursor {
                0 => StreamPosition::Start,
                c => StreamPosition::Position(Position { commit: c, prepare: c }),
            };
            let options = ReadAllOptions::default().position(from).forwards().max_count(PAGE);
            let page = collect(self.client.read_all(&options).await).await.map_err(|e| failed("$all read", e))?;
            let (full, start) = (page.len() == PAGE, cursor);
            for record in page.iter().filter(|r| r.position.commit > start) {
                cursor = record.position.commit;
                if is_ours(&self.prefix, record) {
                    events.push(self.to_stored(record)?);
                    if events.len() == limit {
                        break;
                    }
                }
            }
            if !full || cursor == start {
                break;
            }
        }
        Ok(events)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.check_open().await?;
        let last = scan_back(&self.client, |r| is_ours(&self.prefix, r)).await?;
        Ok(last.map_or(0, |r| r.position.commit))
    }

    /// Scans `$all` backwards: KurrentDB has no index by event id.
    async fn get(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.check_open().await?;
        let uuid = kurrent_id(id);
        // The frame's id follows its version byte: compare it without decoding the event.
        let id_in_frame = |r: &RecordedEvent| r.data.get(1..33) == Some(id.as_bytes().as_slice());
        let found = scan_back(&self.client, |r| r.id == uuid && is_ours(&self.prefix, r) && id_in_frame(r)).await?;
        found.as_ref().map(|r| self.to_stored(r)).transpose()
    }

    async fn erase_body(&self, _id: &EventId) -> Result<bool, StoreError> {
        Err(StoreError::Open(ERASE_UNSUPPORTED.into()))
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    async fn close(&self) {
        *self.closed.write().await = true;
        self.watcher.abort();
    }
}

/// Splits our `streamPrefix` parameter off the URL and turns the `kurrentdb` schemes into
/// the `esdb` ones the client knows.
fn split_url(url: &str) -> Result<(String, String), String> {
    let url = match url.split_once("://") {
        Some(("kurrentdb", rest)) => format!("esdb://{rest}"),
        Some(("kurrentdb+discover", rest)) => format!("esdb+discover://{rest}"),
        _ => url.to_owned(),
    };
    let Some((base, query)) = url.split_once('?') else { return Ok((url, String::new())) };
    let mut prefix = String::new();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case(PREFIX_PARAM) => prefix = value.to_owned(),
            _ => kept.push(pair),
        }
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if !prefix.chars().all(allowed) || prefix.starts_with(['.', ':']) {
        return Err(format!(
            "{PREFIX_PARAM} may hold only ASCII letters, digits and - _ . : (and must not start with . or :)"
        ));
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, prefix))
}

/// The KurrentDB event id of one of ours: its first 16 bytes as a version 8 UUID.
fn kurrent_id(id: &EventId) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    for (to, from) in bytes.iter_mut().zip(id.as_bytes()) {
        *to = *from;
    }
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn is_system(record: &RecordedEvent) -> bool {
    record.stream_id.starts_with('$') || record.event_type.starts_with('$')
}

fn is_ours(prefix: &str, record: &RecordedEvent) -> bool {
    !is_system(record) && record.stream_id.starts_with(prefix)
}

fn event_data(e: &SignedEvent) -> Result<EventData, StoreError> {
    let data = Bytes::from(frame(&e.raw)?);
    Ok(EventData::binary(e.event.core.redacted.kind(), data).id(kurrent_id(&e.event.id)))
}

/// The event's data: version, id, core, body (after a presence flag), signatures.
fn frame(raw: &RawEvent) -> Result<Vec<u8>, StoreError> {
    let body_len = raw.body.as_ref().map_or(0, |b| 4 + b.len());
    let mut out = Vec::with_capacity(1 + 32 + 4 + raw.core.len() + 1 + body_len + 4 + raw.signatures.len());
    out.push(FRAME_VERSION);
    out.extend_from_slice(raw.id.as_bytes());
    put_part(&mut out, &raw.core)?;
    match &raw.body {
        None => out.push(0),
        Some(body) => {
            out.push(1);
            put_part(&mut out, body)?;
        }
    }
    put_part(&mut out, &raw.signatures)?;
    Ok(out)
}

fn put_part(out: &mut Vec<u8>, part: &[u8]) -> Result<(), StoreError> {
    let len =
        u32::try_from(part.len()).map_err(|_| StoreError::InvalidAppend("a part of an event is over 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
    Ok(())
}

/// The stored bytes back out of an event's data, exactly as framed.
fn unframe(data: &[u8]) -> Result<RawEvent, String> {
    let mut input = Frame(data);
    let version = input.byte()?;
    if version != FRAME_VERSION {
        return Err(format!("unknown frame version {version}"));
    }
    let id = EventId::from_hash(input.array()?);
    let core = input.part()?;
    let body = match input.byte()? {
        0 => None,
        1 => Some(input.part()?),
        flag => return Err(format!("bad body flag {flag}")),
    };
    let signatures = input.part()?;
    if !input.0.is_empty() {
        return Err(format!("{} trailing bytes", input.0.len()));
    }
    Ok(RawEvent { id, core, body, signatures })
}

/// What is left of a frame to read.
struct Frame<'a>(&'a [u8]);

impl<'a> Frame<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self.0.split_at_checked(n).ok_or_else(|| "the frame is cut short".to_owned())?;
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let taken = self.take(N)?;
        taken.try_into().map_err(|_| "the frame is cut short".to_owned())
    }

    fn byte(&mut self) -> Result<u8, String> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    fn part(&mut self) -> Result<Vec<u8>, String> {
        let len = u32::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| "a part is too long for this machine".to_owned())?;
        Ok(self.take(len)?.to_vec())
    }
}

fn corrupt(position: u64, why: String) -> StoreError {
    StoreError::Corrupt { position, reason: VerifyError::Malformed(CanonicalError::Malformed(why)) }
}

fn failed(what: &str, e: eventstore::Error) -> StoreError {
    StoreError::Open(format!("KurrentDB {what} failed: {e}"))
}

/// Reads a whole response. A stream that does not exist reads as empty.
async fn collect(read: eventstore::Result<ReadStream>) -> eventstore::Result<Vec<RecordedEvent>> {
    let mut read = match read {
        Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
        other => other?,
    };
    let mut records = Vec::new();
    loop {
        match read.next().await {
            Ok(Some(resolved)) => records.extend(resolved.event),
            Ok(None) => return Ok(records),
            Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
}

/// The newest event of `$all` that `wanted` picks, reading backwards page by page.
async fn scan_back(
    client: &Client,
    mut wanted: impl FnMut(&RecordedEvent) -> bool,
) -> Result<Option<RecordedEvent>, StoreError> {
    let mut from = StreamPosition::End;
    // Events at or after this position were looked at already.
    let mut seen = u64::MAX;
    loop {
        let options = ReadAllOptions::default().position(from).backwards().max_count(PAGE);
        let page = collect(client.read_all(&options).await).await.map_err(|e| failed("$all read", e))?;
        let (full, start) = (page.len() == PAGE, seen);
        for record in page.into_iter().filter(|r| r.position.commit < start) {
            seen = record.position.commit;
            if wanted(&record) {
                return Ok(Some(record));
            }
        }
        if !full || seen == start {
            return Ok(None);
        }
        from = StreamPosition::Position(Position { commit: seen, prepare: seen });
    }
}

fn raise(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|h| {
        let newer = position > *h;
        *h = (*h).max(position);
        newer
    });
}

/// Follows commits of every process through a catch-up subscription to `$all` from its end,
/// filtered to our streams, resubscribing with backoff.
async fn follow_head(client: Client, prefix: String, head: watch::Sender<u64>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let filter = match prefix.as_str() {
            "" => SubscriptionFilter::on_stream_name().exclude_system_events(),
            p => SubscriptionFilter::on_stream_name().add_prefix(p),
        };
        let options = SubscribeToAllOptions::default().position(StreamPosition::End).filter(filter);
        let mut subscription = client.subscribe_to_all(&options).await;
        let failure = loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::Confirmed(_)) => {
                    wait = Duration::from_millis(100);
                    // Subscribed from the end: learn where the head was before.
                    match scan_back(&client, |r| is_ours(&prefix, r)).await {
                        Ok(last) => raise(&head, last.map_or(0, |r| r.position.commit)),
                        Err(e) => break e.to_string(),
                    }
                }
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    if let Some(record) = resolved.event.filter(|r| is_ours(&prefix, r)) {
                        raise(&head, record.position.commit);
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        if head.is_closed() {
            return;
        }
        tracing::warn!(error = %failure, retry_in_ms = wait.as_millis() as u64, "event store: KurrentDB subscription lost");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(body: Option<Vec<u8>>) -> RawEvent {
        RawEvent { id: EventId::from_hash([9; 32]), core: vec![1, 2, 3], body, signatures: vec![4, 5] }
    }

    #[test]
    fn frames_round_trip_with_and_without_a_body() {
        for raw in [raw(Some(vec![7; 300])), raw(Some(vec![])), raw(None)] {
            let framed = frame(&raw).unwrap();
            assert_eq!(unframe(&framed).unwrap(), raw);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let framed = frame(&raw(Some(vec![7; 10]))).unwrap();
        for cut in 0..framed.len() {
            assert!(unframe(&framed[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = framed.clone();
        longer.push(0);
        assert_eq!(unframe(&longer).unwrap_err(), "1 trailing bytes");
        let mut other_version = framed;
        other_version[0] = 2;
        assert!(unframe(&other_version).is_err());
    }

    #[test]
    fn kurrent_ids_are_v8_uuids_of_the_first_16_bytes() {
        let mut hash = [0xff; 32];
        hash[0] = 0x12;
        let uuid = kurrent_id(&EventId::from_hash(hash));
        assert_eq!(uuid.get_version_num(), 8);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(uuid.as_bytes()[0], 0x12);
        assert_eq!(uuid, kurrent_id(&EventId::from_hash(hash)), "the same id every time");
        hash[20] = 0;
        assert_eq!(uuid, kurrent_id(&EventId::from_hash(hash)), "only the first 16 bytes count");
    }

    #[test]
    fn urls_lose_our_prefix_and_the_kurrentdb_scheme() {
        let (url, prefix) = split_url("kurrentdb://admin:changeit@h:2113?tls=false&streamPrefix=og-1-").unwrap();
        assert_eq!((url.as_str(), prefix.as_str()), ("esdb://admin:changeit@h:2113?tls=false", "og-1-"));
        let (url, prefix) = split_url("esdb+discover://h?streamprefix=x").unwrap();
        assert_eq!((url.as_str(), prefix.as_str()), ("esdb+discover://h", "x"));
        assert_eq!(split_url("kurrentdb+discover://h").unwrap().0, "esdb+discover://h");
        assert!(split_url("esdb://h?streamPrefix=$x").is_err(), "system streams are not a namespace");
        assert!(split_url("esdb://h?streamPrefix=a%20b").is_err());
    }
}

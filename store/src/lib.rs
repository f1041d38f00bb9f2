//! The EventStore port and its adapters: SQLite (the embedded default), PostgreSQL, and
//! KurrentDB (behind the `kurrentdb` feature).
//!
//! **Architecture invariant:** only this crate knows sqlx and KurrentDB.
//!
//! **Architecture invariant:** a stored event's bytes are the signed bytes. Nothing here
//! re-encodes an event: reads check the id and content hash of the bytes as stored, then
//! decode them. `erase_body` is the only change ever made to a stored event.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod backup;
mod batch;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
pub mod postgres;
mod sql;
pub mod sqlite;
mod subscription;
pub mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use openguild_domain::event::{self, Event, KeyRing, RawEvent, SignedEvent, VerifyError};
use openguild_domain::{EventId, StreamId};

pub use batch::DEFAULT_MAX_EVENT_BYTES;
pub use subscription::subscribe_all;

/// What the caller expects of the stream's current version when appending.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpectedVersion {
    /// No expectation. The events still carry the seq and `prev` they were signed with, so
    /// they must continue the stream as it is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last seq must be this.
    Exact(u64),
}

/// What an append wrote (or, for a repeated append, found already written).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendResult {
    /// The global position of each event, in order.
    pub positions: Vec<u64>,
    /// The stream's version (last seq) after the append.
    pub version: u64,
}

/// An event as read back: where it is, its decoded form and its bytes as stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredEvent {
    pub position: u64,
    pub event: Event,
    pub raw: RawEvent,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Forward,
    Backward,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "version conflict on {stream}: expected {expected:?}, but the stream's version is {}",
        actual.map_or("none (no stream)".to_owned(), |v| v.to_string())
    )]
    Conflict { stream: StreamId, expected: ExpectedVersion, actual: Option<u64> },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("event {id} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { id: EventId, size: usize, limit: usize },
    #[error("event {id} refused: {reason}")]
    Rejected { id: EventId, reason: VerifyError },
    #[error("stored event at position {position} is corrupt: {reason}")]
    Corrupt { position: u64, reason: VerifyError },
    #[error("{0}")]
    Open(String),
    #[error("the event store is closed")]
    Closed,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// An append taken in line by [`EventStore::queue`]: [`Queued::committed`] answers it.
pub struct Queued(Waiting);

enum Waiting {
    Done(Result<AppendResult, StoreError>),
    Writer(tokio::sync::oneshot::Receiver<Result<AppendResult, StoreError>>),
}

impl Queued {
    /// An append that is already done (an adapter that appends one at a time).
    pub fn ready(result: Result<AppendResult, StoreError>) -> Self {
        Queued(Waiting::Done(result))
    }

    pub(crate) fn writer(reply: tokio::sync::oneshot::Receiver<Result<AppendResult, StoreError>>) -> Self {
        Queued(Waiting::Writer(reply))
    }

    /// Waits for the append's outcome: `Ok` means durable.
    pub async fn committed(self) -> Result<AppendResult, StoreError> {
        match self.0 {
            Waiting::Done(result) => result,
            Waiting::Writer(reply) => reply.await.map_err(|_| StoreError::Closed)?,
        }
    }
}

/// The event store port. Every adapter passes the same conformance suite.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events this process has just signed (they are not verified again). All
    /// events belong to `stream` and continue it: consecutive seqs, each `prev` naming the
    /// one before. Appending events whose ids are already stored is a success that writes
    /// nothing. Acknowledged means durable.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<SignedEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.queue(stream, expected, events).await?.committed().await
    }

    /// Takes an append in line and returns before it is durable: appends queued after it
    /// are checked against the stream as it will be after it, and written after it. A
    /// caller that holds a stream's lock can so queue the next append while this one
    /// commits, and many commit together. An adapter without a queue appends here.
    async fn queue(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<SignedEvent>,
    ) -> Result<Queued, StoreError>;

    /// Events of one stream: forward from `from_seq` (inclusive), or backward from it
    /// (inclusive; `u64::MAX` for the end).
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_seq: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events of every stream with a position after `after`, in order.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last position written (0 when empty).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// One event by id.
    async fn get(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError>;

    /// Removes an event's body for good (redaction, erasure, retention): afterwards the
    /// bytes are in no table and no file. Returns false if there is no such event.
    async fn erase_body(&self, id: &EventId) -> Result<bool, StoreError>;

    /// Wakes whenever the head may have moved (after commits of this or another process).
    fn head_watch(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Waits until appends in flight are committed and stops the writer.
    async fn close(&self);
}

/// Appends events that come from outside this process (federation, import, restore):
/// each is verified — hashes and signature — before anything is written, and the first
/// bad one is refused with the reason.
pub async fn import(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    raws: Vec<RawEvent>,
    keys: &KeyRing,
) -> Result<AppendResult, StoreError> {
    let mut events = Vec::with_capacity(raws.len());
    for raw in raws {
        let event = event::verify(&raw, keys).map_err(|reason| StoreError::Rejected { id: raw.id, reason })?;
        events.push(SignedEvent { event, raw });
    }
    store.append(stream, expected, events).await
}

/// Opens the store a URL names: `sqlite://PATH` (or a bare path), `postgres://…`, or
/// `esdb://…` / `kurrentdb://…` (with the `kurrentdb` feature).
pub async fn open(url: &str, options: Options) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url, options).await?))
    } else if ["esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        open_kurrentdb(url, options).await
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path), options).await?))
    }
}

#[cfg(feature = "kurrentdb")]
async fn open_kurrentdb(url: &str, options: Options) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(Arc::new(kurrentdb::KurrentStore::open(url, options).await?))
}

#[cfg(not(feature = "kurrentdb"))]
async fn open_kurrentdb(_url: &str, _options: Options) -> Result<Arc<dyn EventStore>, StoreError> {
    Err(StoreError::Open(
        "this is a KurrentDB URL, but the binary was built without the `kurrentdb` feature (of openguild-store)".into(),
    ))
}

/// Settings shared by the adapters.
#[derive(Clone, Debug)]
pub struct Options {
    /// The largest event (core + body + signatures) accepted, in bytes.
    pub max_event_bytes: usize,
    /// The most events committed in one transaction by the group-commit writer.
    pub max_batch_events: usize,
    /// Open for reading only, beside a running server (the CLI's `events`, `projections`
    /// and `audit` commands): no writer, no lock. Appends are refused.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_event_bytes: DEFAULT_MAX_EVENT_BYTES, max_batch_events: 1024, read_only: false }
    }
}

/// Positions and seqs are stored as signed 64-bit integers.
pub(crate) fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `(position, id, core, body, signatures)` row read back from SQLite or PostgreSQL.
pub(crate) fn row_to_event<R>(row: &R) -> Result<StoredEvent, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let position: i64 = row.try_get(0)?;
    let id: Vec<u8> = row.try_get(1)?;
    let id: [u8; 32] = id.as_slice().try_into().map_err(|_| {
        StoreError::Open(format!("stored event at position {position} has an id of {} bytes, not 32", id.len()))
    })?;
    let raw = RawEvent {
        id: EventId::from_hash(id),
        core: row.try_get(2)?,
        body: row.try_get(3)?,
        signatures: row.try_get(4)?,
    };
    decode_row(position as u64, raw)
}

/// Decodes a row read back, checking id and content hash.
pub(crate) fn decode_row(position: u64, raw: RawEvent) -> Result<StoredEvent, StoreError> {
    let event = raw.decode().map_err(|reason| StoreError::Corrupt { position, reason })?;
    Ok(StoredEvent { position, event, raw })
}

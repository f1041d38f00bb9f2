//! PostgreSQL: many writers in many processes on one database.
//!
//! The sequence-gap trap: with positions from a sequence, transaction B can commit
//! position N+1 while A, holding N, is still open; a reader then sees N+1, moves its
//! checkpoint past N, and never sees N. Here every appending transaction first locks the
//! one `store_head` row, takes its positions from it, and holds the lock until COMMIT. So
//! positions are handed out in commit order and a transaction's rows are visible before
//! the next one can take a position: readers always see a gap-free prefix. The cost is that
//! appends from all processes serialise on one row for the length of a transaction
//! (about one WAL fsync); group commit amortises it over the batch, see
//! docs/ARCHITECTURE.md and docs/PERFORMANCE.md.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use openguild_domain::event::SignedEvent;
use openguild_domain::{EventId, StreamId};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batch::{self, Head, Plan, Request};
use crate::sqlite::migrate_error;
use crate::{AppendResult, Direction, EventStore, ExpectedVersion, Options, Queued, StoreError, StoredEvent, clamp};

const CHANNEL: &str = "openguild_events";

enum Job {
    Append(Request),
    Close { reply: oneshot::Sender<()> },
}

pub struct PostgresStore {
    pool: PgPool,
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<u64>,
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    options: Options,
}

impl PostgresStore {
    /// Connects, applies the schema, and starts the writer and the commit listener.
    pub async fn open(url: &str, options: Options) -> Result<Self, StoreError> {
        let fail = |why: String| StoreError::Open(format!("cannot open the PostgreSQL event store: {why}"));
        let connect: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| fail(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.clone())
            .await
            .map_err(|e| fail(format!("{e} (is PostgreSQL running and the URL right?)")))?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await.map_err(|e| fail(migrate_error(e)))?;
        let writer = PgConnection::connect_with(&connect).await.map_err(|e| fail(e.to_string()))?;
        let position = head_position(&pool).await?;
        let (head_tx, head_rx) = watch::channel(position);
        let (jobs, rx) = mpsc::channel(4096);
        let listener = tokio::spawn(listen(connect.clone(), head_tx.clone()));
        let writer = tokio::spawn(run_writer(writer, connect, rx, head_tx, options.clone()));
        Ok(Self { pool, jobs, head: head_rx, tasks: tokio::sync::Mutex::new(vec![writer, listener]), options })
    }
}

async fn head_position(pool: &PgPool) -> Result<u64, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM store_head").fetch_one(pool).await?;
    Ok(head as u64)
}

/// Follows commits of every process through LISTEN/NOTIFY, reconnecting with backoff.
async fn listen(connect: PgConnectOptions, head: watch::Sender<u64>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let result: Result<(), sqlx::Error> = async {
            let mut listener = PgListener::connect_with(&PgPool::connect_lazy_with(connect.clone())).await?;
            listener.listen(CHANNEL).await?;
            wait = Duration::from_millis(100);
            loop {
                let note = listener.recv().await?;
                if let Ok(p) = note.payload().parse::<u64>() {
                    head.send_if_modified(|h| {
                        let newer = p > *h;
                        *h = (*h).max(p);
                        newer
                    });
                }
            }
        }
        .await;
        if head.is_closed() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "event store: LISTEN connection lost");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn queue(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<SignedEvent>,
    ) -> Result<Queued, StoreError> {
        batch::enqueue(&self.jobs, Job::Append, (stream, expected, events), self.options.max_event_bytes).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_seq: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        crate::sql::read_stream(&self.pool, stream, from_seq, limit, direction).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        crate::sql::read_all(&self.pool, after, limit).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        head_position(&self.pool).await
    }

    async fn get(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        crate::sql::get(&self.pool, id).await
    }

    /// Sets the body to NULL. PostgreSQL keeps the old tuple until VACUUM removes it, so the
    /// table is vacuumed at once; the bytes may linger in WAL segments until they recycle,
    /// which the operator's WAL retention bounds (docs/OPERATIONS.md).
    async fn erase_body(&self, id: &EventId) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE events SET body = NULL WHERE id = $1")
            .bind(&id.as_bytes()[..])
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("VACUUM events").execute(&self.pool).await?;
        Ok(true)
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        for task in self.tasks.lock().await.drain(..) {
            task.abort();
        }
        self.pool.close().await;
    }
}

async fn run_writer(
    mut conn: PgConnection,
    connect: PgConnectOptions,
    mut jobs: mpsc::Receiver<Job>,
    head: watch::Sender<u64>,
    options: Options,
) {
    let mut wait = Duration::from_millis(100);
    while let Some(job) = jobs.recv().await {
        let (mut batch, close) = batch::gather(job, &mut jobs, options.max_batch_events, |job| match job {
            Job::Append(r) => Ok(r),
            other => Err(other),
        });
        if !batch.is_empty() {
            match commit(&mut conn, &mut batch).await {
                Ok((position, replies)) => {
                    head.send_if_modified(|h| {
                        let newer = position > *h;
                        *h = (*h).max(position);
                        newer
                    });
                    for (reply, result) in replies {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "event store: batch commit failed");
                    let message = e.to_string();
                    for r in batch.drain(..) {
                        let _ = r
                            .reply
                            .send(Err(StoreError::Open(format!("append failed, nothing was written: {message}"))));
                    }
                    // The connection may be gone: reconnect before the next batch.
                    if conn.ping().await.is_err() {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        if let Ok(fresh) = PgConnection::connect_with(&connect).await {
                            conn = fresh;
                            wait = Duration::from_millis(100);
                        }
                    }
                }
            }
        }
        if let Some(Job::Close { reply }) = close {
            let _ = reply.send(());
            return;
        }
    }
}

type Replies = Vec<(oneshot::Sender<Result<AppendResult, StoreError>>, Result<AppendResult, StoreError>)>;

/// One transaction: lock the head row, read the heads of the batch's streams, plan each
/// request, insert all rows, move the head, notify, commit.
async fn commit(conn: &mut PgConnection, batch: &mut Vec<Request>) -> Result<(u64, Replies), StoreError> {
    let mut tx = conn.begin().await?;
    let mut position: i64 =
        sqlx::query_scalar("SELECT position FROM store_head FOR UPDATE").fetch_one(&mut *tx).await?;
    let streams: Vec<String> = {
        let mut s: Vec<String> = batch.iter().map(|r| r.stream.to_string()).collect();
        s.sort();
        s.dedup();
        s
    };
    let mut heads: HashMap<String, Option<Head>> = streams.iter().map(|s| (s.clone(), None)).collect();
    let rows = sqlx::query(
        "SELECT s.stream, e.seq, e.id FROM UNNEST($1::text[]) AS s(stream) \
         CROSS JOIN LATERAL (SELECT seq, id FROM events WHERE stream = s.stream ORDER BY seq DESC LIMIT 1) e",
    )
    .bind(&streams)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let stream: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let id: Vec<u8> = row.try_get(2)?;
        let id = EventId::from_hash(id.as_slice().try_into().unwrap_or([0; 32]));
        heads.insert(stream, Some(Head { seq: seq as u64, id }));
    }

    let mut results = Vec::with_capacity(batch.len());
    let (mut positions_col, mut ids, mut stream_col, mut seqs, mut cores, mut bodies, mut sigs) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in batch.iter() {
        let key = r.stream.to_string();
        let head = heads.get(&key).copied().flatten();
        let mut stored = vec![None; r.events.len()];
        let planned = match batch::plan(&r.stream, r.expected, &r.events, &stored, head) {
            Err(StoreError::Conflict { .. }) => {
                let ids: Vec<Vec<u8>> = r.events.iter().map(|e| e.event.id.as_bytes().to_vec()).collect();
                let found: Vec<(Vec<u8>, i64)> = sqlx::query_as("SELECT id, position FROM events WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?;
                stored = ids.iter().map(|id| found.iter().find(|(f, _)| f == id).map(|(_, p)| *p as u64)).collect();
                batch::plan(&r.stream, r.expected, &r.events, &stored, head)
            }
            other => other,
        };
        match planned {
            Ok(Plan::AlreadyStored(result)) => results.push(Ok(result)),
            Ok(Plan::Write { skip }) => {
                let mut positions: Vec<u64> = stored.iter().take(skip).flatten().copied().collect();
                for e in r.events.iter().skip(skip) {
                    position += 1;
                    positions.push(position as u64);
                    positions_col.push(position);
                    ids.push(e.event.id.as_bytes().to_vec());
                    stream_col.push(key.clone());
                    seqs.push(clamp(e.event.core.seq));
                    cores.push(e.raw.core.clone());
                    bodies.push(e.raw.body.clone());
                    sigs.push(e.raw.signatures.clone());
                }
                let last = r.events.last().map(|e| Head { seq: e.event.core.seq, id: e.event.id });
                heads.insert(key, last);
                results.push(Ok(AppendResult { positions, version: last.map_or(0, |h| h.seq) }));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "WITH ins AS (INSERT INTO events (position, id, stream, seq, core, body, signatures) \
               SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bytea[])), \
             upd AS (UPDATE store_head SET position = $8 RETURNING position) \
             SELECT pg_notify($9, (SELECT position FROM upd)::text)",
        )
        .bind(&positions_col)
        .bind(&ids)
        .bind(&stream_col)
        .bind(&seqs)
        .bind(&cores)
        .bind(&bodies)
        .bind(&sigs)
        .bind(position)
        .bind(CHANNEL)
        .fetch_all(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let replies = batch.drain(..).map(|r| r.reply).zip(results).collect();
    Ok((position as u64, replies))
}

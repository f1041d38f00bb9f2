//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`, so an
//! acknowledged append has been fsync'd.
//!
//! One writer task owns the only write connection and commits whatever appends are queued
//! in one transaction (group commit): durability costs one fsync per batch, not per event.
//! Being the only writer, it assigns positions in commit order and keeps each stream's head
//! in memory; a lock file stops a second process from writing to the same file. Reads go
//! through a pool of read-only connections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use openguild_domain::event::SignedEvent;
use openguild_domain::{EventId, StreamId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batch::{self, Head, Plan, Request};
use crate::{AppendResult, Direction, EventStore, ExpectedVersion, Options, Queued, StoreError, StoredEvent, clamp};

/// `PRAGMA application_id` of an OpenGuild event store ("OGES").
const APPLICATION_ID: i32 = 0x4F47_4553;
/// Rows per INSERT statement (7 parameters each; SQLite allows 32,766).
const ROWS_PER_INSERT: usize = 128;

enum Job {
    Append(Request),
    Erase {
        id: EventId,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Finish what is queued before this, then stop.
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub struct SqliteStore {
    path: PathBuf,
    readers: SqlitePool,
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<u64>,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    options: Options,
    /// Held while open; released by `close`.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`. A file that is not an OpenGuild event store,
    /// is corrupt, or was written by a newer version is refused with the reason, and
    /// nothing in it is changed.
    pub async fn open(path: &Path, options: Options) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let fail = |why: String| StoreError::Open(format!("cannot open the event store {shown}: {why}"));
        check_file_header(path).map_err(&fail)?;
        if options.read_only {
            return Self::open_read_only(path, options).await;
        }
        let lock_path = lock_path(path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| fail(format!("cannot create {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| fail("another openguild process is using it (its lock file is held)".into()))?;

        let base = SqliteConnectOptions::from_str(&format!("sqlite://{shown}")).map_err(|e| fail(e.to_string()))?;
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            // Look before touching: even setting WAL mode would change a stranger's file.
            let mut look =
                SqliteConnection::connect_with(&base.clone().read_only(true)).await.map_err(|e| fail(corrupt(e)))?;
            check_ownership(&mut look).await.map_err(&fail)?;
            let _ = look.close().await;
        }
        let connect = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Erased bodies are overwritten with zeros, not just unlinked.
            .pragma("secure_delete", "ON");
        let mut writer = SqliteConnection::connect_with(&connect).await.map_err(|e| fail(corrupt(e)))?;
        sqlx::migrate!("../migrations/sqlite").run(&mut writer).await.map_err(|e| fail(migrate_error(e)))?;
        warn_without_qpsg(&mut writer).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA application_id = {APPLICATION_ID}")))
            .execute(&mut writer)
            .await
            .map_err(|e| fail(e.to_string()))?;

        let position: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut writer)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect.clone().read_only(true).create_if_missing(false))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (head_tx, head_rx) = watch::channel(position as u64);
        let (jobs, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run_writer(writer, rx, head_tx, position as u64, options.clone()));
        Ok(Self {
            path: path.to_owned(),
            readers,
            jobs,
            head: head_rx,
            writer: tokio::sync::Mutex::new(Some(task)),
            options,
            lock: std::sync::Mutex::new(Some(lock)),
        })
    }

    async fn open_read_only(path: &Path, options: Options) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let fail = |why: String| StoreError::Open(format!("cannot open the event store {shown}: {why}"));
        if !path.exists() {
            return Err(fail("there is no such file (has the server run with this data directory?)".into()));
        }
        let connect = SqliteConnectOptions::from_str(&format!("sqlite://{shown}"))
            .map_err(|e| fail(e.to_string()))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let readers =
            SqlitePoolOptions::new().max_connections(2).connect_with(connect).await.map_err(|e| fail(corrupt(e)))?;
        let position: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&readers)
            .await
            .map_err(|e| fail(corrupt(e)))?;
        // Another process writes: follow its commits by looking at the head now and then.
        let (head_tx, head) = watch::channel(position as u64);
        let poller = {
            let readers = readers.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if let Ok(p) = sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(position), 0) FROM events")
                        .fetch_one(&readers)
                        .await
                    {
                        head_tx.send_if_modified(|h| std::mem::replace(h, p as u64) != p as u64);
                    }
                    if head_tx.is_closed() {
                        return;
                    }
                }
            })
        };
        let (jobs, _) = mpsc::channel(1);
        Ok(Self {
            path: path.to_owned(),
            readers,
            jobs,
            head,
            writer: tokio::sync::Mutex::new(Some(poller)),
            options,
            lock: std::sync::Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Says so when this build's SQLite lacks the query planner stability guarantee, which
/// the workspace's `.cargo/config.toml` turns on: without it every statement with a bound
/// `LIMIT ?` is parsed again on each run (correct, but far slower).
async fn warn_without_qpsg(conn: &mut SqliteConnection) {
    let options: Vec<String> =
        sqlx::query_scalar("PRAGMA compile_options").fetch_all(&mut *conn).await.unwrap_or_default();
    if !options.iter().any(|o| o == "ENABLE_QPSG") {
        tracing::warn!(
            "this build's SQLite lacks ENABLE_QPSG: paged reads are re-prepared on every run; \
             build openguild from its workspace (its .cargo/config.toml sets LIBSQLITE3_FLAGS)"
        );
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Refuses a file that exists but is not a SQLite database, before SQLite touches it.
fn check_file_header(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let mut header = [0u8; 16];
    match file.read(&mut header) {
        Ok(0) => Ok(()),
        Ok(16) if &header == b"SQLite format 3\0" => Ok(()),
        Ok(_) => Err("it is not a SQLite database (so not an OpenGuild event store); nothing was changed".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Refuses a SQLite database that belongs to something else.
async fn check_ownership(conn: &mut SqliteConnection) -> Result<(), String> {
    let app: i32 = sqlx::query_scalar("PRAGMA application_id").fetch_one(&mut *conn).await.map_err(corrupt)?;
    if app == APPLICATION_ID {
        return Ok(());
    }
    if app != 0 {
        return Err(format!("it belongs to another application (application_id {app:#x}); nothing was changed"));
    }
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut *conn)
        .await
        .map_err(corrupt)?;
    if let Some(other) = tables.iter().find(|t| *t != "_sqlx_migrations" && *t != "events") {
        return Err(format!(
            "it is a SQLite database of another application (it has a table {other:?}); nothing was changed"
        ));
    }
    Ok(())
}

fn corrupt(e: sqlx::Error) -> String {
    format!("the file is unreadable or corrupt ({e}); nothing was changed")
}

pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::VersionMissing(v) => format!(
            "its schema version {v} is newer than this openguild knows; run a newer openguild (nothing was changed)"
        ),
        M::VersionMismatch(v) => format!("its schema migration {v} differs from this openguild's; nothing was changed"),
        other => other.to_string(),
    }
}

#[async_trait]
impl EventStore for SqliteStore {
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
        crate::sql::read_stream(&self.readers, stream, from_seq, limit, direction).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        crate::sql::read_all(&self.readers, after, limit).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events").fetch_one(&self.readers).await?;
        Ok(head as u64)
    }

    async fn get(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        crate::sql::get(&self.readers, id).await
    }

    async fn erase_body(&self, id: &EventId) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job::Erase { id: *id, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.writer.lock().await.take() {
            if self.options.read_only {
                task.abort();
            }
            let _ = task.await;
        }
        self.readers.close().await;
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

/// The writer: takes what is queued, commits it in one transaction, acknowledges.
async fn run_writer(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Job>,
    head_tx: watch::Sender<u64>,
    mut position: u64,
    options: Options,
) {
    let mut heads: HashMap<StreamId, Option<Head>> = HashMap::new();
    while let Some(job) = jobs.recv().await {
        // An erase or a close ends the batch: it runs after the appends queued before it.
        let (mut batch, after) = batch::gather(job, &mut jobs, options.max_batch_events, |job| match job {
            Job::Append(r) => Ok(r),
            other => Err(other),
        });
        if !batch.is_empty() {
            match commit(&mut conn, &mut heads, &mut batch, position).await {
                Ok((new_position, replies)) => {
                    position = new_position;
                    head_tx.send_replace(position);
                    for (reply, result) in replies {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    heads.clear();
                    tracing::error!(error = %e, "event store: batch commit failed");
                    let message = e.to_string();
                    for r in batch.drain(..) {
                        let _ = r.reply.send(Err(StoreError::Open(format!("append failed: {message}"))));
                    }
                }
            }
        }
        match after {
            Some(Job::Erase { id, reply }) => {
                let _ = reply.send(erase_body(&mut conn, &id).await);
            }
            Some(Job::Close { reply }) => {
                let _ = conn.close().await;
                let _ = reply.send(());
                return;
            }
            _ => {}
        }
    }
}

type Replies = Vec<(oneshot::Sender<Result<AppendResult, StoreError>>, Result<AppendResult, StoreError>)>;

/// Commits one batch. Requests refused by `plan` write nothing and get their error;
/// the rest are written in one transaction. Replies are sent only after COMMIT.
async fn commit(
    conn: &mut SqliteConnection,
    heads: &mut HashMap<StreamId, Option<Head>>,
    batch: &mut Vec<Request>,
    mut position: u64,
) -> Result<(u64, Replies), StoreError> {
    let mut replies = Vec::with_capacity(batch.len());
    let mut rows: Vec<(u64, &SignedEvent)> = Vec::new();
    let requests = std::mem::take(batch);
    // Plan outside any transaction: this task is the only writer, so nothing can change
    // between reading the heads and writing.
    let planned = async {
        for r in &requests {
            let head = match heads.get(&r.stream) {
                Some(h) => *h,
                None => {
                    let h = load_head(conn, &r.stream).await?;
                    heads.insert(r.stream.clone(), h);
                    h
                }
            };
            let planned = match batch::plan(&r.stream, r.expected, &r.events, &vec![None; r.events.len()], head) {
                // A conflict may be a retry of an append that was written: look the ids up.
                Err(StoreError::Conflict { .. }) => {
                    let stored = stored_positions(conn, &r.events).await?;
                    batch::plan(&r.stream, r.expected, &r.events, &stored, head)
                }
                other => other,
            };
            match planned {
                Ok(Plan::AlreadyStored(result)) => replies.push(Ok(result)),
                Ok(Plan::Write { skip }) => {
                    let mut positions = Vec::with_capacity(r.events.len());
                    let stored = stored_positions(conn, r.events.get(..skip).unwrap_or_default()).await?;
                    positions.extend(stored.into_iter().flatten());
                    for e in r.events.iter().skip(skip) {
                        position += 1;
                        positions.push(position);
                        rows.push((position, e));
                    }
                    let last = r.events.last().map(|e| Head { seq: e.event.core.seq, id: e.event.id });
                    heads.insert(r.stream.clone(), last);
                    replies.push(Ok(AppendResult { positions, version: last.map_or(0, |h| h.seq) }));
                }
                Err(e) => replies.push(Err(e)),
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = planned {
        *batch = requests;
        return Err(e);
    }
    // One INSERT is atomic on its own: most batches need no BEGIN/COMMIT round trips
    // (each costs ~70 µs through sqlx's worker thread).
    let written = if rows.len() <= ROWS_PER_INSERT {
        insert_rows(conn, &rows).await
    } else {
        async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                if let Err(e) = insert_rows(conn, chunk).await {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            }
            if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
            Ok(())
        }
        .await
    };
    if let Err(e) = written {
        *batch = requests;
        return Err(e);
    }
    let replies = requests.into_iter().map(|r| r.reply).zip(replies).collect();
    Ok((position, replies))
}

async fn load_head(conn: &mut SqliteConnection, stream: &StreamId) -> Result<Option<Head>, StoreError> {
    let row = sqlx::query("SELECT seq, id FROM events WHERE stream = ? ORDER BY seq DESC LIMIT 1")
        .bind(stream.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let seq: i64 = row.try_get(0)?;
    let id: Vec<u8> = row.try_get(1)?;
    Ok(Some(Head { seq: seq as u64, id: EventId::from_hash(id.as_slice().try_into().unwrap_or([0; 32])) }))
}

async fn stored_positions(conn: &mut SqliteConnection, events: &[SignedEvent]) -> Result<Vec<Option<u64>>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let p: Option<i64> = sqlx::query_scalar("SELECT position FROM events WHERE id = ?")
            .bind(&e.event.id.as_bytes()[..])
            .fetch_optional(&mut *conn)
            .await?;
        out.push(p.map(|p| p as u64));
    }
    Ok(out)
}

async fn insert_rows(conn: &mut SqliteConnection, rows: &[(u64, &SignedEvent)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO events (position, id, stream, seq, core, body, signatures) VALUES ");
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(?,?,?,?,?,?,?)" } else { ",(?,?,?,?,?,?,?)" });
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (position, e) in rows {
        q = q
            .bind(clamp(*position))
            .bind(&e.event.id.as_bytes()[..])
            .bind(e.event.core.stream.to_string())
            .bind(clamp(e.event.core.seq))
            .bind(e.raw.core.as_slice())
            .bind(e.raw.body.as_deref())
            .bind(e.raw.signatures.as_slice());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Sets the body to NULL (secure_delete zeroes the freed bytes), then checkpoints and
/// truncates the WAL so the old page images are in no file either.
async fn erase_body(conn: &mut SqliteConnection, id: &EventId) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE events SET body = NULL WHERE id = ?").bind(&id.as_bytes()[..]).execute(&mut *conn).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    for attempt in 0..50 {
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
        let busy: i64 = row.try_get(0)?;
        if busy == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10 * (attempt + 1))).await;
    }
    tracing::warn!(event = %id, "erased body: the WAL could not be truncated yet (readers busy); it will be at the next checkpoint");
    Ok(true)
}

//! Running projections: catch up from the checkpoint, follow the live feed, stop on an
//! event that cannot be applied; rebuild beside the live tables and swap.
//!
//! Every batch transaction first claims the checkpoint row (`UPDATE … WHERE position = the
//! one we read`), so a rebuild that swapped tables underneath, or another node, makes the
//! batch roll back and re-read instead of applying twice. Claiming the checkpoint first also
//! gives every writer the same lock order, so a swap and a batch cannot deadlock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openguild_store::{EventStore, StoredEvent};
use sqlx::{AnyConnection, Connection, Executor, Row};
use tokio::sync::watch;

use crate::db::{self, DbKind, ReadDb, Tables};
use crate::pipe::{Committed, Pipe};
use crate::writer::{Memory, Writer};
use crate::{ApplyError, Projection, ProjectionError};

const BATCH: usize = 1000;

/// Where a projection is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProjectionState {
    /// Applying events behind the head.
    CatchingUp,
    /// Has applied everything up to the head it last saw.
    CaughtUp,
    /// Another node runs it; this one stands by.
    Standby,
    /// Met an event it cannot apply; kept its position.
    Stopped { event: String, reason: String },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub position: u64,
    pub state: ProjectionState,
}

/// The projections of one server, each running in its own task.
pub struct Projections {
    db: ReadDb,
    status: HashMap<&'static str, watch::Receiver<ProjectionStatus>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Projections {
    /// Makes sure each projection's tables exist at its version (rebuilding from zero when
    /// the version changed), then starts them.
    pub async fn start(
        db: ReadDb,
        store: Arc<dyn EventStore>,
        list: Vec<Arc<dyn Projection>>,
    ) -> Result<Projections, ProjectionError> {
        let mut status = HashMap::new();
        let mut tasks = Vec::new();
        for p in list {
            prepare(&db, &*p).await?;
            let (tx, rx) = watch::channel(ProjectionStatus {
                name: p.name(),
                position: read_checkpoint(&db, p.name()).await?.0,
                state: ProjectionState::CatchingUp,
            });
            status.insert(p.name(), rx);
            tasks.push(tokio::spawn(run(db.clone(), store.clone(), p, tx)));
        }
        Ok(Projections { db, status, tasks })
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    /// Each projection's position and state.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let mut all: Vec<_> = self.status.values().map(|rx| rx.borrow().clone()).collect();
        all.sort_by_key(|s| s.name);
        all
    }

    /// Waits until the named projections (all, if empty) have applied `position`: what a
    /// client that just wrote needs before it reads (read-your-writes).
    pub async fn wait_for(&self, names: &[&str], position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(unknown) = names.iter().find(|n| !self.status.contains_key(**n)) {
            let known: Vec<&str> = self.status.keys().copied().collect();
            return Err(ProjectionError::Unknown((*unknown).to_owned(), known.join(", ")));
        }
        for (name, rx) in &self.status {
            if !names.is_empty() && !names.contains(name) {
                continue;
            }
            let mut rx = rx.clone();
            let reached = tokio::time::timeout_at(deadline, async {
                loop {
                    let s = rx.borrow_and_update().clone();
                    if s.position >= position {
                        return Ok(());
                    }
                    if let ProjectionState::Stopped { event, reason } = s.state {
                        return Err(ProjectionError::Stopped {
                            name: name.to_string(),
                            position: s.position,
                            event,
                            reason,
                        });
                    }
                    if rx.changed().await.is_err() {
                        return Err(ProjectionError::Timeout(name.to_string(), position));
                    }
                }
            })
            .await;
            match reached {
                Ok(result) => result?,
                Err(_) => return Err(ProjectionError::Timeout(name.to_string(), position)),
            }
        }
        Ok(())
    }

    /// Stops every projection task (what is committed stays committed).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Creates a projection's live tables, or recreates them when its version changed.
async fn prepare(db: &ReadDb, p: &dyn Projection) -> Result<(), ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query("SELECT version FROM projection_checkpoints WHERE name = $1")
        .bind(p.name())
        .fetch_optional(&mut *conn)
        .await?;
    let stored: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
    if stored == Some(p.version()) {
        return Ok(());
    }
    if stored.is_some() {
        tracing::info!(projection = p.name(), "projection tables changed version: rebuilding from zero");
    }
    let mut tx = db::begin_write(&mut conn, db.kind).await?;
    let names: Vec<String> = p.tables().iter().map(|t| Tables::LIVE.n(t)).collect();
    db::drop_tables(&mut tx, &names).await?;
    db::create(&mut tx, &p.schema(db.kind, &Tables::LIVE)).await?;
    upsert_checkpoint(&mut tx, p.name(), 0, p.version()).await?;
    tx.commit().await?;
    Ok(())
}

async fn upsert_checkpoint(
    conn: &mut AnyConnection,
    name: &str,
    position: u64,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position, version, state, error_event, error) \
         VALUES ($1, $2, $3, 'running', NULL, NULL) \
         ON CONFLICT (name) DO UPDATE SET position = $2, version = $3, state = 'running', error_event = NULL, error = NULL",
    )
    .bind(name)
    .bind(position as i64)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// A projection's checkpoint and, if stopped, why.
pub(crate) async fn read_checkpoint(
    db: &ReadDb,
    name: &str,
) -> Result<(u64, Option<(String, String)>), ProjectionError> {
    let row = sqlx::query("SELECT position, state, error_event, error FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok((0, None)) };
    let position: i64 = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let stopped = if state == "stopped" {
        Some((
            row.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
            row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
        ))
    } else {
        None
    };
    Ok((position as u64, stopped))
}

/// The status of every projection as recorded in the database (for the CLI).
pub async fn recorded_status(db: &ReadDb) -> Result<Vec<(String, u64, String, Option<String>)>, ProjectionError> {
    let rows =
        sqlx::query("SELECT name, position, state, error_event, error FROM projection_checkpoints ORDER BY name")
            .fetch_all(&db.pool)
            .await?;
    let mut out = Vec::new();
    for r in rows {
        let error = match (r.try_get::<Option<String>, _>(3)?, r.try_get::<Option<String>, _>(4)?) {
            (Some(event), Some(reason)) => Some(format!("event {event}: {reason}")),
            _ => None,
        };
        out.push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64, r.try_get(2)?, error));
    }
    Ok(out)
}

/// One projection's loop.
async fn run(db: ReadDb, store: Arc<dyn EventStore>, p: Arc<dyn Projection>, status: watch::Sender<ProjectionStatus>) {
    let mut head = store.head_watch();
    let mut lock: Option<AnyConnection> = None;
    loop {
        if db.kind == DbKind::Postgres && lock.is_none() {
            match take_lock(&db, p.name()).await {
                Ok(Some(conn)) => lock = Some(conn),
                Ok(None) => {
                    status.send_modify(|s| s.state = ProjectionState::Standby);
                    // Follow the owner's checkpoint until the next try for the lock, so that
                    // reads on this node can wait for a position (read-your-writes).
                    let retry = tokio::time::Instant::now() + Duration::from_secs(2);
                    while tokio::time::Instant::now() < retry {
                        if let Ok((position, _)) = read_checkpoint(&db, p.name()).await {
                            status.send_if_modified(|s| {
                                let moved = s.position != position;
                                s.position = position;
                                moved
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, "projection: cannot reach the read model database");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        head.borrow_and_update();
        match step(&db, &*store, &*p, &Tables::LIVE).await {
            Ok(Step::Applied { position, caught_up }) => {
                status.send_modify(|s| {
                    s.position = position;
                    s.state = if caught_up { ProjectionState::CaughtUp } else { ProjectionState::CatchingUp };
                });
            }
            Ok(Step::Idle { position }) => {
                status.send_modify(|s| {
                    s.position = position;
                    s.state = ProjectionState::CaughtUp;
                });
                let _ = tokio::time::timeout(Duration::from_secs(1), head.changed()).await;
                // The lock's connection doubles as the lease: if it is gone, so is the lock.
                if let Some(conn) = lock.as_mut()
                    && conn.ping().await.is_err()
                {
                    tracing::warn!(projection = p.name(), "projection: lost its lock; standing by");
                    lock = None;
                }
            }
            Ok(Step::Raced) => {}
            Ok(Step::Stopped { position, event, reason }) => {
                tracing::error!(projection = p.name(), position, event = %event, reason = %reason, "projection stopped: cannot apply event");
                status.send_modify(|s| {
                    s.position = position;
                    s.state = ProjectionState::Stopped { event, reason };
                });
                return;
            }
            Err(e) => {
                tracing::warn!(projection = p.name(), error = %e, "projection: batch failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// On PostgreSQL, one node runs each projection: a session advisory lock on a dedicated
/// connection.
async fn take_lock(db: &ReadDb, name: &str) -> Result<Option<AnyConnection>, sqlx::Error> {
    let mut conn = db.pool.acquire().await?.detach();
    let key = name.bytes().fold(0x4f47_i64, |h, b| h.wrapping_mul(31).wrapping_add(i64::from(b)));
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
    Ok(got.then_some(conn))
}

pub(crate) enum Step {
    Applied {
        position: u64,
        caught_up: bool,
    },
    Idle {
        position: u64,
    },
    /// The checkpoint moved underneath (a rebuild swapped, or another node ran): re-read.
    Raced,
    Stopped {
        position: u64,
        event: String,
        reason: String,
    },
}

/// Reads one batch after the checkpoint and applies it with the new checkpoint in one
/// transaction.
pub(crate) async fn step(
    db: &ReadDb,
    store: &dyn EventStore,
    p: &dyn Projection,
    t: &Tables,
) -> Result<Step, ProjectionError> {
    let (checkpoint, stopped) = read_checkpoint(db, &checkpoint_name(p.name(), t)).await?;
    if let Some((event, reason)) = stopped {
        return Ok(Step::Stopped { position: checkpoint, event, reason });
    }
    let events = store.read_all(checkpoint, BATCH).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Step::Idle { position: checkpoint });
    };
    match apply_batch(db, p, t, checkpoint, &events).await? {
        Ok(()) => {
            let head = store.head_watch().borrow().to_owned();
            Ok(Step::Applied { position: last, caught_up: last >= head })
        }
        Err(None) => Ok(Step::Raced),
        Err(Some((event, reason))) => {
            sqlx::query(
                "UPDATE projection_checkpoints SET state = 'stopped', error_event = $2, error = $3 WHERE name = $1",
            )
            .bind(checkpoint_name(p.name(), t))
            .bind(&event)
            .bind(&reason)
            .execute(&db.pool)
            .await?;
            // The events before the bad one were committed.
            let position = read_checkpoint(db, &checkpoint_name(p.name(), t)).await?.0;
            Ok(Step::Stopped { position, event, reason })
        }
    }
}

fn checkpoint_name(name: &str, t: &Tables) -> String {
    if t.is_live() { name.to_owned() } else { t.n(name) }
}

/// `Ok(Err(None))`: raced; `Ok(Err(Some(..)))`: the event that could not be applied.
type BatchOutcome = Result<(), Option<(String, String)>>;

async fn apply_batch(
    db: &ReadDb,
    p: &dyn Projection,
    t: &Tables,
    checkpoint: u64,
    events: &[StoredEvent],
) -> Result<BatchOutcome, ProjectionError> {
    let name = checkpoint_name(p.name(), t);
    match apply_events(db, p, t, &name, checkpoint, events, false).await? {
        Applied::All => Ok(Ok(())),
        Applied::Raced => Ok(Err(None)),
        Applied::Failed | Applied::Stopped { .. } => {
            // Find the exact event, one at a time, and keep everything before it.
            match apply_events(db, p, t, &name, checkpoint, events, true).await? {
                Applied::Raced => Ok(Err(None)),
                Applied::Stopped { event, reason } => Ok(Err(Some((event, reason)))),
                Applied::All | Applied::Failed => Err(ProjectionError::Stopped {
                    name,
                    position: checkpoint,
                    event: String::new(),
                    reason: "a batch failed but no single event did (is the database failing?)".into(),
                }),
            }
        }
    }
}

enum Applied {
    All,
    Raced,
    /// The batch failed somewhere (held-back inserts hide where).
    Failed,
    /// One event by one: it failed; the ones before it are committed.
    Stopped {
        event: String,
        reason: String,
    },
}

const CLAIM: &str = "UPDATE projection_checkpoints SET position = position WHERE name = $1 AND position = $2";
/// Moves a claimed checkpoint.
const MOVE: &str = "UPDATE projection_checkpoints SET position = $2 WHERE name = $1";

/// Claims a checkpoint row for this transaction, if it is still at `checkpoint`: the row
/// stays locked until the transaction ends. `false`: it moved underneath (a rebuild swapped,
/// or another node ran), and the caller re-reads.
async fn claim(tx: &mut AnyConnection, name: &str, checkpoint: u64) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(CLAIM).bind(name).bind(checkpoint as i64).execute(&mut *tx).await?;
    Ok(claimed.rows_affected() == 1)
}

/// Applies `events` after claiming the checkpoint, and moves it, in one transaction. With
/// `one_by_one`, rows are sent after each event, so a failure names its event, and the
/// events before it are committed.
async fn apply_events(
    db: &ReadDb,
    p: &dyn Projection,
    t: &Tables,
    name: &str,
    checkpoint: u64,
    events: &[StoredEvent],
    one_by_one: bool,
) -> Result<Applied, ProjectionError> {
    let mut conn = db.pool.acquire().await?;
    let mut tx = db::begin_write(&mut conn, db.kind).await?;
    if !claim(&mut tx, name, checkpoint).await? {
        tx.rollback().await?;
        return Ok(Applied::Raced);
    }
    let mut done = checkpoint;
    let mut failure = None;
    {
        let mut w = Writer::new(&mut tx, db.kind);
        for e in events {
            let applied = match p.apply(&mut w, db.kind, t, e).await {
                Ok(()) if one_by_one => w.flush().await.map_err(ApplyError::from),
                other => other,
            };
            match applied {
                Ok(()) => done = e.position,
                Err(err) => {
                    failure = Some((e.event.id.to_string(), format!("at position {}: {err}", e.position)));
                    break;
                }
            }
        }
        if failure.is_none() && w.flush().await.is_err() {
            failure = Some((String::new(), String::new()));
        }
    }
    if failure.is_some() && !one_by_one {
        // Roll back now, not on drop: SQLite's write lock must go before the next try.
        tx.rollback().await?;
        return Ok(Applied::Failed);
    }
    if let Some((event, reason)) = failure {
        // The failed event's statements may have half run: start again with what came
        // before it, which is known to apply.
        tx.rollback().await?;
        let before: Vec<StoredEvent> = events.iter().take_while(|e| e.position <= done).cloned().collect();
        if !before.is_empty() {
            match Box::pin(apply_events(db, p, t, name, checkpoint, &before, false)).await? {
                Applied::All => {}
                Applied::Raced => return Ok(Applied::Raced),
                Applied::Failed | Applied::Stopped { .. } => return Ok(Applied::Failed),
            }
        }
        return Ok(Applied::Stopped { event, reason });
    }
    sqlx::query(MOVE).bind(name).bind(done as i64).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Applied::All)
}

/// Progress of a rebuild, for the CLI's progress bar.
#[derive(Clone, Copy, Debug)]
pub struct RebuildProgress {
    pub position: u64,
    pub head: u64,
    pub elapsed: Duration,
}

/// Pages of events a rebuild applies to all its projections in one transaction. Every
/// commit writes back each page the random-keyed indexes (message ids) had touched, nearly
/// all their leaves, so fewer, larger transactions write less; a group's events are let go
/// page by page, so its size does not cost memory.
const GROUP_PAGES: usize = 64;

/// Rebuilds projections from position 0 into fresh tables beside the live ones, reading
/// the events once for all of them, then swaps each in atomically once caught up. The live
/// tables keep serving meanwhile, and a running server's projection carries on from the
/// swapped-in checkpoint.
///
/// The events are read (and checked and decoded) on a task of their own, a few pages ahead.
/// Every group of pages is applied to all the projections in one transaction, with the same
/// `apply` and SQL as the live path: on SQLite through a writer thread of its own
/// ([`crate::pipe`]), on PostgreSQL on a connection of its own. A group that fails is rolled
/// back and applied again page by page, projection by projection, through the live path's
/// batches, which stop at the exact event and keep what came before.
pub async fn rebuild(
    db: &ReadDb,
    store: Arc<dyn EventStore>,
    list: &[Arc<dyn Projection>],
    mut progress: impl FnMut(RebuildProgress),
) -> Result<u64, ProjectionError> {
    let started = Instant::now();
    let t = Tables::REBUILD;
    // Its own connection, out of the pool: its settings and page cache are the rebuild's.
    let mut conn = db.pool.acquire().await?.detach();
    for p in list {
        let names: Vec<String> = p.tables().iter().map(|n| t.n(n)).collect();
        let mut tx = db::begin_write(&mut conn, db.kind).await?;
        db::drop_tables(&mut tx, &names).await?;
        db::create(&mut tx, &p.schema(db.kind, &t)).await?;
        upsert_checkpoint(&mut tx, &checkpoint_name(p.name(), &t), 0, p.version()).await?;
        tx.commit().await?;
    }
    let mut via = match &db.path {
        Some(path) => Via::Pipe(Pipe::open(path)?),
        None => Via::Sqlx(&mut conn, db.kind),
    };
    let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<Result<Vec<StoredEvent>, ProjectionError>>(4);
    let reader = tokio::spawn({
        let store = store.clone();
        async move {
            let mut after = 0;
            loop {
                let page = store.read_all(after, BATCH).await.map_err(ProjectionError::from);
                let last = page.as_ref().ok().and_then(|p| p.last().map(|e| e.position));
                // The writer stopped, or there is nothing more to read.
                if pages_tx.send(page).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => after = last,
                    None => return,
                }
            }
        }
    });
    let mut position = 0;
    let mut last_report = Instant::now();
    let mut memory = Memory::default();
    let applied: Result<(), ProjectionError> = async {
        loop {
            memory.forget_texts();
            let (applied, group, kept) = apply_group(&mut via, list, &t, position, &mut pages, memory).await?;
            memory = kept;
            match applied {
                Applied::All => position = group.last.unwrap_or(position),
                Applied::Raced => return Err(raced(list, position)),
                Applied::Failed | Applied::Stopped { .. } => {
                    // Read the group's events again (it keeps none: they are large), and
                    // apply them page by page, projection by projection.
                    while let Some(last) = group.last.filter(|last| *last > position) {
                        let page: Vec<StoredEvent> = store
                            .read_all(position, BATCH)
                            .await?
                            .into_iter()
                            .take_while(|e| e.position <= last)
                            .collect();
                        if page.is_empty() {
                            break;
                        }
                        position = apply_page_one_by_one(db, list, &t, position, &page).await?;
                    }
                }
            }
            if group.done {
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_millis(200) {
                let head = store.head_watch().borrow().to_owned();
                progress(RebuildProgress { position, head, elapsed: started.elapsed() });
                last_report = Instant::now();
            }
        }
    }
    .await;
    drop(pages);
    reader.abort();
    if let Via::Pipe(pipe) = via {
        pipe.close();
    }
    applied?;
    if db.kind == DbKind::Sqlite {
        // The swap is what makes the rebuilt tables live: it must survive a power loss.
        conn.execute("PRAGMA synchronous = FULL").await?;
    }
    for p in list {
        swap(&mut conn, db.kind, &**p, position).await?;
    }
    if db.kind == DbKind::Sqlite {
        // Give back the WAL's disk space now if no reader is in the way (a running server's
        // may be: then it is reused, and shrinks when the server closes the database).
        let _ = conn.execute("PRAGMA busy_timeout = 0; PRAGMA wal_checkpoint(TRUNCATE)").await;
    }
    conn.close().await?;
    let head = store.head_watch().borrow().to_owned();
    progress(RebuildProgress { position, head, elapsed: started.elapsed() });
    Ok(position)
}

/// Where a rebuild writes: a SQLite writer thread, or a connection (PostgreSQL).
enum Via<'c> {
    Pipe(Pipe),
    Sqlx(&'c mut AnyConnection, DbKind),
}

fn raced(list: &[Arc<dyn Projection>], position: u64) -> ProjectionError {
    ProjectionError::Stopped {
        name: list.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        position,
        event: String::new(),
        reason: "another rebuild of it is running".into(),
    }
}

/// What a rebuild applied in one transaction.
struct Group {
    /// The position of the last event taken, if any.
    last: Option<u64>,
    /// How many pages were taken.
    pages: usize,
    /// The events ran out.
    done: bool,
}

type Source = tokio::sync::mpsc::Receiver<Result<Vec<StoredEvent>, ProjectionError>>;

/// Applies up to [`GROUP_PAGES`] pages, each as it arrives, to every projection in one
/// transaction that claims and moves all their checkpoints. `Failed`: something failed and
/// nothing was written. Hands back what the writer remembers while it stays true (after a
/// commit).
async fn apply_group(
    via: &mut Via<'_>,
    list: &[Arc<dyn Projection>],
    t: &Tables,
    checkpoint: u64,
    source: &mut Source,
    memory: Memory,
) -> Result<(Applied, Group, Memory), ProjectionError> {
    let names: Vec<String> = list.iter().map(|p| checkpoint_name(p.name(), t)).collect();
    let mut group = Group { last: None, pages: 0, done: false };
    let last = |group: &Group| group.last.map(|p| p as i64);
    match via {
        Via::Pipe(pipe) => {
            pipe.begin().await?;
            for name in &names {
                pipe.claim(CLAIM.into(), vec![name.into(), (checkpoint as i64).into()]).await?;
            }
            let mut w = Writer::piped(pipe).with_memory(memory);
            let applied = take_pages(&mut w, list, t, source, &mut group).await?;
            let memory = w.into_memory();
            let Some(last) = last(&group).filter(|_| applied) else {
                pipe.rollback().await?;
                let outcome = if applied { Applied::All } else { Applied::Failed };
                return Ok((outcome, group, Memory::default()));
            };
            for name in names {
                pipe.exec(MOVE.into(), vec![name.into(), last.into()]).await?;
            }
            // The statements ran behind: one that failed fails the commit.
            Ok(match pipe.commit().await? {
                Committed::Yes => (Applied::All, group, memory),
                Committed::Raced => (Applied::Raced, group, Memory::default()),
                Committed::Failed(error) => {
                    tracing::warn!(%error, checkpoint, "rebuild: a group failed; applying it again page by page");
                    (Applied::Failed, group, Memory::default())
                }
            })
        }
        Via::Sqlx(conn, kind) => {
            let mut tx = db::begin_write(conn, *kind).await?;
            for name in &names {
                if !claim(&mut tx, name, checkpoint).await? {
                    tx.rollback().await?;
                    return Ok((Applied::Raced, group, Memory::default()));
                }
            }
            let mut w = Writer::new(&mut tx, *kind).with_memory(memory);
            let applied = take_pages(&mut w, list, t, source, &mut group).await?;
            let memory = w.into_memory();
            let Some(last) = last(&group).filter(|_| applied) else {
                // Roll back now, not on drop: the one-by-one path needs the rows unlocked.
                tx.rollback().await?;
                let outcome = if applied { Applied::All } else { Applied::Failed };
                return Ok((outcome, group, Memory::default()));
            };
            for name in names {
                sqlx::query(MOVE).bind(name).bind(last).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok((Applied::All, group, memory))
        }
    }
}

/// Takes up to [`GROUP_PAGES`] pages and applies each, as it arrives, to every projection,
/// then lets it go. False: a projection could not apply an event; the group ends with that
/// page.
async fn take_pages(
    w: &mut Writer<'_>,
    list: &[Arc<dyn Projection>],
    t: &Tables,
    source: &mut Source,
    group: &mut Group,
) -> Result<bool, ProjectionError> {
    let kind = w.kind();
    while group.pages < GROUP_PAGES {
        let page = match source.recv().await.transpose()? {
            Some(page) if !page.is_empty() => page,
            _ => {
                group.done = true;
                break;
            }
        };
        let mut applied = true;
        'projections: for (i, p) in list.iter().enumerate() {
            w.serve(i);
            for e in &page {
                if p.apply(w, kind, t, e).await.is_err() {
                    applied = false;
                    break 'projections;
                }
            }
        }
        group.pages += 1;
        group.last = page.last().map(|e| e.position);
        if !applied {
            return Ok(false);
        }
    }
    Ok(w.flush().await.is_ok())
}

/// Applies one page to each projection through the live path's batches, which name the
/// event a projection cannot apply. Returns the position reached.
async fn apply_page_one_by_one(
    db: &ReadDb,
    list: &[Arc<dyn Projection>],
    t: &Tables,
    position: u64,
    page: &[StoredEvent],
) -> Result<u64, ProjectionError> {
    for p in list {
        match apply_batch(db, &**p, t, position, page).await? {
            Ok(()) => {}
            Err(None) => return Err(raced(std::slice::from_ref(p), position)),
            Err(Some((event, reason))) => {
                let kept = read_checkpoint(db, &checkpoint_name(p.name(), t)).await?.0;
                return Err(ProjectionError::Stopped { name: p.name().to_owned(), position: kept, event, reason });
            }
        }
    }
    Ok(page.last().map_or(position, |e| e.position))
}

/// Replaces a projection's live tables and checkpoint with its rebuilt ones.
async fn swap(
    conn: &mut AnyConnection,
    kind: DbKind,
    p: &dyn Projection,
    position: u64,
) -> Result<(), ProjectionError> {
    let t = Tables::REBUILD;
    let rebuild_names: Vec<String> = p.tables().iter().map(|n| t.n(n)).collect();
    // Swap: claim the live checkpoint first (the lock order every batch uses), then replace
    // the live tables and checkpoint with the rebuilt ones, in one transaction.
    let mut tx = db::begin_write(conn, kind).await?;
    sqlx::query("UPDATE projection_checkpoints SET position = position WHERE name = $1")
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
    let live_names: Vec<String> = p.tables().iter().map(|n| Tables::LIVE.n(n)).collect();
    db::drop_tables(&mut tx, &live_names).await?;
    for (from, to) in rebuild_names.iter().zip(&live_names) {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {from} RENAME TO {to}"))).execute(&mut *tx).await?;
    }
    if kind == DbKind::Postgres {
        // PostgreSQL keeps index names: give them back their live names.
        for (from, to) in rebuild_names.iter().zip(&live_names) {
            let indexes: Vec<String> =
                sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = $1")
                    .bind(to)
                    .fetch_all(&mut *tx)
                    .await?;
            for idx in indexes.into_iter().filter(|i| i.contains(from.as_str())) {
                let renamed = idx.replace(from.as_str(), to);
                sqlx::query(sqlx::AssertSqlSafe(format!("ALTER INDEX {idx} RENAME TO {renamed}")))
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    upsert_checkpoint(&mut tx, p.name(), position, p.version()).await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(checkpoint_name(p.name(), &t))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

//! Rebuilding projections from position 0 into `<table>__rebuild` tables beside the live
//! ones, reading the events once for all of them, then swapping each in atomically.
//!
//! A rebuild applies groups of pages to all its projections in one transaction each (on
//! SQLite through its own writer thread, [`crate::pipe`]); a group that fails is applied again
//! page by page through the live path's batches ([`crate::batch`]), which name the event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openguild_store::{EventStore, StoredEvent};
use sqlx::{AnyConnection, Connection, Executor};

use crate::batch::{Applied, BATCH, apply_batch};
use crate::checkpoint::{
    CLAIM, MOVE, checkpoint_name, claim, claim_at_any_position, delete_checkpoint, read_checkpoint, upsert_checkpoint,
};
use crate::db::{self, DbKind, ReadDb, Tables};
use crate::pipe::{Committed, Pipe};
use crate::writer::{Memory, Writer};
use crate::{Projection, ProjectionError};

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
    claim_at_any_position(&mut tx, p.name()).await?;
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
    delete_checkpoint(&mut tx, &checkpoint_name(p.name(), &t)).await?;
    tx.commit().await?;
    Ok(())
}

//! One projection's batch: its events applied in one transaction that first claims its
//! checkpoint and last moves it, so a crash loses the whole batch or none of it. When a batch
//! fails, it is applied again event by event, which names the event and keeps what came
//! before it. The live runner's steps and a rebuild's failed groups both go through here:
//! one mechanism, whether live or rebuilt.

use openguild_store::StoredEvent;

use crate::checkpoint::{MOVE, checkpoint_name, claim};
use crate::db::{self, ReadDb, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection, ProjectionError};

/// Events read, and applied, at a time.
pub(crate) const BATCH: usize = 1000;

/// `Ok(Err(None))`: raced; `Ok(Err(Some(..)))`: the event that could not be applied.
pub(crate) type BatchOutcome = Result<(), Option<(String, String)>>;

/// Applies `events` to one projection after its checkpoint, in one transaction; on a
/// failure, again one event at a time, to find the event and keep the ones before it.
pub(crate) async fn apply_batch(
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

/// How applying events ended.
pub(crate) enum Applied {
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

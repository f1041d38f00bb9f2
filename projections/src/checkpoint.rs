//! The checkpoint table, `projection_checkpoints`: each projection's position, the version
//! of its tables, and whether it stopped and at which event. Every statement on it is here;
//! the live runner, the batches and the rebuild call these.
//!
//! Every transaction that writes a projection's rows claims its checkpoint row first (a
//! batch, a rebuild's group, a swap): one lock order, so they cannot deadlock, and a claim
//! that finds the row moved tells the writer that someone else wrote (a rebuild swapped, or
//! another node ran).
//!
//! A rebuild's projection has a checkpoint of its own, named like its tables
//! ([`checkpoint_name`]), until the swap replaces the live one with it.

use sqlx::{AnyConnection, Row};

use crate::ProjectionError;
use crate::db::{ReadDb, Tables};

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

/// The checkpoint row of a projection's tables `t`.
pub(crate) fn checkpoint_name(name: &str, t: &Tables) -> String {
    if t.is_live() { name.to_owned() } else { t.n(name) }
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

/// The version of a projection's tables, if it has a checkpoint.
pub(crate) async fn stored_version(conn: &mut AnyConnection, name: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT version FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Claims a checkpoint row if it is still at `$2` ([`claim`]); a rebuild's writer thread
/// runs it as a statement that must change exactly one row.
pub(crate) const CLAIM: &str =
    "UPDATE projection_checkpoints SET position = position WHERE name = $1 AND position = $2";
/// Moves a claimed checkpoint.
pub(crate) const MOVE: &str = "UPDATE projection_checkpoints SET position = $2 WHERE name = $1";

/// Claims a checkpoint row for this transaction, if it is still at `checkpoint`: the row
/// stays locked until the transaction ends. `false`: it moved underneath (a rebuild swapped,
/// or another node ran), and the caller re-reads.
pub(crate) async fn claim(tx: &mut AnyConnection, name: &str, checkpoint: u64) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(CLAIM).bind(name).bind(checkpoint as i64).execute(&mut *tx).await?;
    Ok(claimed.rows_affected() == 1)
}

/// Claims a checkpoint row wherever it is: what a swap takes first, in the lock order every
/// batch uses.
pub(crate) async fn claim_at_any_position(conn: &mut AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE projection_checkpoints SET position = position WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a checkpoint's position and version, running (a stop is forgotten).
pub(crate) async fn upsert_checkpoint(
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

/// Records that a projection stopped at `event`, and why; its position stays.
pub(crate) async fn record_stop(db: &ReadDb, name: &str, event: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE projection_checkpoints SET state = 'stopped', error_event = $2, error = $3 WHERE name = $1")
        .bind(name)
        .bind(event)
        .bind(reason)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Forgets a checkpoint (a rebuild's, once swapped in).
pub(crate) async fn delete_checkpoint(conn: &mut AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(name).execute(conn).await?;
    Ok(())
}

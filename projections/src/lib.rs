//! Projection runner (checkpoints, catch-up, live, rebuild) and OpenGuild's read models.
//!
//! Each projection has a name, its own tables and a checkpoint row. The runner reads the
//! events after the checkpoint, applies them in one transaction together with the new
//! checkpoint, and commits: a crash never applies an event twice or skips one. A projection
//! that cannot apply an event stops there, keeps its position and records which event and
//! why; it never skips silently.
//!
//! Read models live in SQLite by default and in PostgreSQL when configured (through sqlx's
//! `Any` driver, one SQL text for both; the few differences are in [`db`] and [`writer`]).
//!
//! The modules, each importing only those below it:
//! - `runner`: the live runner; `rebuild`: rebuilding beside the live tables and swapping.
//! - What both share: `batch`, one projection's batch in one transaction; `checkpoint`,
//!   every statement on the checkpoint table.
//! - The read models (`directory`, `timeline`, `audit`, `reports`, `outbox`, `search`, `reads`),
//!   which share `apply`'s helpers and never import each other; `queries` reads them.
//! - [`writer`]: the transaction projections write through, to sqlx or to `pipe`, a
//!   rebuild's SQLite writer thread; [`db`]: the database, table names, values, errors.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod apply;
pub mod audit;
mod batch;
mod checkpoint;
pub mod db;
pub mod directory;
pub mod lease;
pub mod outbox;
mod pipe;
pub mod queries;
pub mod reads;
mod rebuild;
pub mod replay;
pub mod reports;
mod runner;
pub mod search;
pub mod timeline;
pub mod voice;
pub mod writer;

use async_trait::async_trait;
use openguild_store::StoredEvent;

pub use checkpoint::recorded_status;
pub use db::{DbError, DbKind, ReadDb, Tables, Val};
pub use rebuild::{RebuildProgress, rebuild};
pub use runner::{ProjectionState, ProjectionStatus, Projections};
pub use writer::Writer;

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] db::DbError),
}

/// Errors of the runner and the read model database.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read model database: {0}")]
    Writer(String),
    #[error("event store: {0}")]
    Store(#[from] openguild_store::StoreError),
    #[error("no projection named {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("projection {name} stopped at position {position}: event {event} could not be applied: {reason}")]
    Stopped { name: String, position: u64, event: String, reason: String },
    #[error("a read model row is corrupt: {0}")]
    Corrupt(String),
    #[error("timed out waiting for {0} to reach position {1}")]
    Timeout(String, u64),
}

impl From<db::DbError> for ProjectionError {
    fn from(e: db::DbError) -> Self {
        match e {
            db::DbError::Sqlx(e) => ProjectionError::Database(e),
            db::DbError::Sqlite(e) => ProjectionError::Writer(e),
        }
    }
}

/// One read model.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Its name, as in `openguild projections rebuild NAME`.
    fn name(&self) -> &'static str;
    /// The version of its tables; a different stored version triggers a rebuild.
    fn version(&self) -> i64;
    /// The base names of the tables it owns.
    fn tables(&self) -> &'static [&'static str];
    /// Statements creating its tables under the names `t` gives.
    fn schema(&self, db: DbKind, t: &Tables) -> Vec<String>;
    /// Applies one event inside the runner's transaction.
    async fn apply(&self, w: &mut Writer<'_>, db: DbKind, t: &Tables, event: &StoredEvent) -> Result<(), ApplyError>;
}

/// Every read model of the server named `us`, in the order they are run.
pub fn all(us: &str) -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(directory::Directory),
        std::sync::Arc::new(timeline::Timeline),
        std::sync::Arc::new(audit::AuditLog),
        std::sync::Arc::new(reports::Reports),
        std::sync::Arc::new(outbox::FederationOutbox::new(us)),
        std::sync::Arc::new(search::Search),
        std::sync::Arc::new(reads::Reads),
        std::sync::Arc::new(voice::Voice),
    ]
}

/// Every row of every read model's live tables as sorted text, table by table: for
/// debugging, and for comparing live tables with a rebuild.
pub async fn dump_tables(db: &ReadDb) -> Result<std::collections::BTreeMap<String, Vec<String>>, sqlx::Error> {
    use sqlx::Row;
    let mut out = std::collections::BTreeMap::new();
    for p in all("") {
        for table in p.tables() {
            // PostgreSQL: one JSON text per row (the Any driver cannot decode a tsvector);
            // the derived `tsv` column is left out.
            let sql = match db.kind {
                DbKind::Sqlite => format!("SELECT * FROM {table}"),
                DbKind::Postgres => format!("SELECT (to_jsonb(t) - 'tsv')::text FROM {table} t"),
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&db.pool).await?;
            let mut lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<Option<String>, _>(i)
                                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                                .or_else(|_| {
                                    r.try_get::<Option<i64>, _>(i).map(|v| v.map_or("NULL".into(), |v| v.to_string()))
                                })
                                .unwrap_or_else(|_| "<undecodable>".into())
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect();
            lines.sort();
            out.insert((*table).to_owned(), lines);
        }
    }
    Ok(out)
}

//! The read model database: SQLite (a file beside the event store) or PostgreSQL, through
//! sqlx's `Any` driver. SQL is written once with `$1` placeholders, which both accept.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which engine holds the read models.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// Table names for one generation of a projection's tables: the live ones, or the fresh
/// ones a rebuild fills beside them.
#[derive(Clone, Debug)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    pub const LIVE: Tables = Tables { suffix: "" };
    pub const REBUILD: Tables = Tables { suffix: "__rebuild" };

    /// The full name of a base table name.
    pub fn n(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    pub fn is_live(&self) -> bool {
        self.suffix.is_empty()
    }
}

/// A pool on the read model database.
#[derive(Clone)]
pub struct ReadDb {
    pub pool: AnyPool,
    pub kind: DbKind,
}

impl ReadDb {
    /// Opens `sqlite://PATH` (or a bare path) or `postgres://…`, and makes sure the
    /// checkpoint table exists.
    pub async fn open(url: &str) -> Result<ReadDb, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let (kind, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (DbKind::Postgres, url.to_owned())
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            (DbKind::Sqlite, format!("sqlite://{path}?mode=rwc"))
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(if kind == DbKind::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // A lost commit after power loss is re-derived from the events, so
                        // NORMAL is enough here; the checkpoint moves with the rows.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let db = ReadDb { pool, kind };
        db.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS projection_checkpoints (
                    name TEXT PRIMARY KEY,
                    position BIGINT NOT NULL,
                    version BIGINT NOT NULL,
                    state TEXT NOT NULL,
                    error_event TEXT,
                    error TEXT
                )",
            )
            .await?;
        Ok(db)
    }

    /// `BIGINT`-sized integer column type and blob type names for DDL.
    pub fn blob(&self) -> &'static str {
        match self.kind {
            DbKind::Sqlite => "BLOB",
            DbKind::Postgres => "BYTEA",
        }
    }
}

/// Runs DDL statements.
pub(crate) async fn create(conn: &mut sqlx::AnyConnection, statements: &[String]) -> Result<(), sqlx::Error> {
    for s in statements {
        conn.execute(sqlx::AssertSqlSafe(s.as_str())).await?;
    }
    Ok(())
}

/// Drops tables if they exist.
pub(crate) async fn drop_tables(conn: &mut sqlx::AnyConnection, names: &[String]) -> Result<(), sqlx::Error> {
    for n in names {
        conn.execute(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {n}"))).await?;
    }
    Ok(())
}

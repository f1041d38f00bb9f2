//! The read model database: SQLite (a file beside the event store) or PostgreSQL, through
//! sqlx's `Any` driver. SQL is written once with `$1` placeholders, which both accept.
//!
//! Also what every writer of read models shares: table names, bound values and their
//! errors, DDL. It imports nothing of this crate; the writers (`writer`, `pipe`) build on it.

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
    /// The database file, on SQLite: a rebuild opens its own writer on it
    /// ([`crate::pipe`]).
    pub path: Option<std::path::PathBuf>,
}

/// An error of the read model database, from sqlx or from a rebuild's SQLite writer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("{0}")]
    Sqlite(String),
}

impl ReadDb {
    /// Opens `sqlite://PATH` (or a bare path) or `postgres://…`, and makes sure the
    /// checkpoint table exists.
    pub async fn open(url: &str) -> Result<ReadDb, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let (kind, url, path) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (DbKind::Postgres, url.to_owned(), None)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            (DbKind::Sqlite, format!("sqlite://{path}?mode=rwc"), Some(path.into()))
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(if kind == DbKind::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // A lost commit after power loss is re-derived from the events, so
                        // NORMAL is enough here; the checkpoint moves with the rows. Freed
                        // bytes are zeroed: a deleted message's text must not linger in a page.
                        conn.execute(
                            "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let db = ReadDb { pool, kind, path };
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
        // Where each worker that acts on events (not a read model) has got to.
        db.pool
            .execute("CREATE TABLE IF NOT EXISTS worker_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
            .await?;
        // Peers' key documents as fetched (JSON, self-signed): `events verify` checks their
        // events with them, offline.
        db.pool
            .execute("CREATE TABLE IF NOT EXISTS peer_keys (server TEXT PRIMARY KEY, document TEXT NOT NULL)")
            .await?;
        // Proposals to a guild's owner that could not be delivered yet, oldest first per owner
        // (`api::remote`). Acknowledged writes in waiting: not a read model, never rebuilt.
        db.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS proposal_queue (id TEXT PRIMARY KEY, owner TEXT NOT NULL, \
                 queued_at BIGINT NOT NULL, proposal TEXT NOT NULL)",
            )
            .await?;
        // How each peer's sender is doing: `openguild federation status`.
        db.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS peer_status (peer TEXT PRIMARY KEY, last_success BIGINT, last_error TEXT, \
                 last_error_at BIGINT, backoff_ms BIGINT NOT NULL)",
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

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails with
/// SQLITE_BUSY, without waiting, when another connection committed in between.
pub async fn begin_write(
    conn: &mut sqlx::AnyConnection,
    kind: DbKind,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    match kind {
        DbKind::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await,
        DbKind::Postgres => sqlx::Connection::begin(conn).await,
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

/// The compact key of a message (or event) id: its first 8 bytes as an integer. Tables
/// index this instead of the id's text: an index of random 45-character strings outgrows
/// the page cache long before one of 8-byte integers does. Lookups check the id as well, so
/// two ids sharing a key are told apart.
pub fn id_key(id: &openguild_domain::EventId) -> i64 {
    let [a, b, c, d, e, f, g, h, ..] = *id.as_bytes();
    i64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// The type of a column that is the table's key and its order: on SQLite an alias of the
/// rowid, so rows are appended in order, not inserted into a separate index.
pub fn position_key(db: DbKind) -> &'static str {
    match db {
        DbKind::Sqlite => "INTEGER PRIMARY KEY",
        DbKind::Postgres => "BIGINT PRIMARY KEY",
    }
}

/// A value bound to a statement. NULLs carry their type, as PostgreSQL wants.
#[derive(Clone, Debug)]
pub enum Val {
    I(Option<i64>),
    T(Option<String>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::I(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::T(Some(v))
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::T(Some(v.clone()))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::T(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::T(v)
    }
}

/// Sets column `i` of a held-back row (rows have their table's width).
pub fn set(row: &mut [Val], i: usize, v: Val) {
    if let Some(slot) = row.get_mut(i) {
        *slot = v;
    }
}

/// A statement with its values bound, to run on a pool or connection.
pub(crate) fn query(sql: String, binds: Vec<Val>) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    binds.into_iter().fold(sqlx::query(sqlx::AssertSqlSafe(sql)), bind)
}

/// Binds a value to a query or a scalar query.
pub(crate) trait BindVal: Sized {
    fn bind_i(self, v: Option<i64>) -> Self;
    fn bind_t(self, v: Option<String>) -> Self;
}

impl BindVal for sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_i(self, v: Option<i64>) -> Self {
        self.bind(v)
    }
    fn bind_t(self, v: Option<String>) -> Self {
        self.bind(v)
    }
}

impl<O> BindVal for sqlx::query::QueryScalar<'_, sqlx::Any, O, sqlx::any::AnyArguments> {
    fn bind_i(self, v: Option<i64>) -> Self {
        self.bind(v)
    }
    fn bind_t(self, v: Option<String>) -> Self {
        self.bind(v)
    }
}

pub(crate) fn bind<Q: BindVal>(q: Q, v: Val) -> Q {
    match v {
        Val::I(i) => q.bind_i(i),
        Val::T(t) => q.bind_t(t),
    }
}

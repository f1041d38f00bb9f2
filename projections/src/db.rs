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

/// Statement sizes (rows) pending inserts are cut into. A few fixed sizes keep the number
/// of distinct statements small, so each is prepared once and then found in sqlx's cache.
const CHUNKS: [usize; 6] = [MAX_CHUNK, 128, 32, 8, 2, 1];
const MAX_CHUNK: usize = 1024;

/// The runner's transaction as projections see it. Plain inserts are held back and sent
/// together: with sqlx as multi-row INSERTs (each statement costs ~70 µs of round trip with
/// sqlx on SQLite, far more than a row), to a rebuild's SQLite writer as one queued batch.
/// Any other statement or read sends the held rows first, so everything still happens in
/// event order as far as any statement can see.
pub struct Writer<'c> {
    target: Target<'c>,
    kind: DbKind,
    pending: Vec<Pending>,
    memory: Memory,
}

/// What a writer remembers between statements.
#[derive(Default)]
pub struct Memory {
    /// Lookups made (`None`: looked up, not there), one map for each projection the writer
    /// serves. Kept only while what they saw is committed: a rolled-back batch drops them,
    /// so it leaves nothing stale behind.
    lookups: Vec<std::collections::HashMap<String, Option<String>>>,
    /// Which projection the writer serves now.
    serving: usize,
    /// Ids as text, by their bytes: base58 costs about a microsecond an id, and every
    /// projection needs the same few ids of an event. A cache of a pure function, so it
    /// serves every projection.
    texts: std::collections::HashMap<Vec<u8>, String>,
}

impl Memory {
    /// Forgets the ids as text (a rebuild keeps its lookups from one group to the next, but
    /// the ids of past events are not seen again).
    pub fn forget_texts(&mut self) {
        self.texts.clear();
    }

    fn lookups(&mut self) -> &mut std::collections::HashMap<String, Option<String>> {
        if self.lookups.len() <= self.serving {
            self.lookups.resize_with(self.serving + 1, Default::default);
        }
        // In bounds: resized just above.
        #[allow(clippy::indexing_slicing)]
        &mut self.lookups[self.serving]
    }
}

struct Pending {
    /// The table name, and the column list if any.
    table: String,
    tail: &'static str,
    width: usize,
    rows: Vec<Vec<Val>>,
}

impl Pending {
    /// Whether these rows go into `table`.
    fn is_for(&self, table: &str) -> bool {
        self.table.strip_prefix(table).is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    }
}

/// Where a writer's statements go.
enum Target<'c> {
    /// A connection with a transaction open.
    Sqlx(&'c mut sqlx::AnyConnection),
    /// A rebuild's SQLite writer, with a transaction open.
    Pipe(&'c crate::pipe::Pipe),
}

impl<'c> Writer<'c> {
    pub fn new(conn: &'c mut sqlx::AnyConnection, kind: DbKind) -> Self {
        Self::to(Target::Sqlx(conn), kind)
    }

    pub(crate) fn piped(pipe: &'c crate::pipe::Pipe) -> Self {
        Self::to(Target::Pipe(pipe), DbKind::Sqlite)
    }

    fn to(target: Target<'c>, kind: DbKind) -> Self {
        Self { target, kind, pending: Vec::new(), memory: Memory::default() }
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Goes on from what an earlier writer remembered.
    pub fn with_memory(mut self, memory: Memory) -> Self {
        self.memory = memory;
        self
    }

    /// What this writer remembers, for the next one.
    pub fn into_memory(self) -> Memory {
        self.memory
    }

    /// Serves the `i`th projection from now on: lookups are each projection's own.
    pub fn serve(&mut self, i: usize) {
        self.memory.serving = i;
    }

    /// An id as text: `make()` the first time these bytes are seen.
    pub fn text(&mut self, bytes: &[u8], make: impl FnOnce() -> String) -> String {
        if let Some(t) = self.memory.texts.get(bytes) {
            return t.clone();
        }
        let t = make();
        self.memory.texts.insert(bytes.to_vec(), t.clone());
        t
    }

    /// A value looked up earlier in this batch, or by `sql()` (one text column of one row).
    pub async fn lookup(
        &mut self,
        key: String,
        sql: impl FnOnce() -> String,
        binds: Vec<Val>,
    ) -> Result<Option<String>, DbError> {
        if let Some(v) = self.memory.lookups().get(&key) {
            return Ok(v.clone());
        }
        self.flush().await?;
        let found = match &mut self.target {
            Target::Sqlx(conn) => {
                let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql()));
                for b in binds {
                    q = bind(q, b);
                }
                q.fetch_optional(&mut **conn).await?
            }
            Target::Pipe(pipe) => pipe.query(sql(), binds).await?,
        };
        self.memory.lookups().insert(key, found.clone());
        Ok(found)
    }

    /// Records a value for later lookups in this batch.
    pub fn remember(&mut self, key: String, value: String) {
        self.memory.lookups().insert(key, Some(value));
    }

    /// Queues `INSERT INTO table VALUES (row) tail`.
    /// Held rows are all sent once a table has as many as the largest statement takes, so a
    /// batch of any size holds few rows in memory. All of them, so that whatever was queued
    /// after a row still held back is held back too.
    pub async fn insert(&mut self, table: String, tail: &'static str, row: Vec<Val>) -> Result<(), DbError> {
        let width = row.len();
        let Some(p) = self.pending.iter_mut().find(|p| p.table == table && p.tail == tail && p.width == width) else {
            self.pending.push(Pending { table, tail, width, rows: vec![row] });
            return Ok(());
        };
        p.rows.push(row);
        if p.rows.len() >= MAX_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Changes the most recent held-back row of `table` whose column `key` holds `value`.
    /// Returns false when no such row is held back (it was sent: change it with SQL).
    pub fn update_held(&mut self, table: &str, key: usize, value: &str, change: impl FnOnce(&mut Vec<Val>)) -> bool {
        for p in self.pending.iter_mut().filter(|p| p.is_for(table)) {
            if let Some(row) =
                p.rows.iter_mut().rev().find(|r| matches!(r.get(key), Some(Val::T(Some(v))) if v == value))
            {
                change(row);
                return true;
            }
        }
        false
    }

    /// Whether a row of `table` whose column `key` holds `value` is held back.
    pub fn held(&self, table: &str, key: usize, value: &str) -> bool {
        self.pending
            .iter()
            .filter(|p| p.is_for(table))
            .any(|p| p.rows.iter().rev().any(|r| matches!(r.get(key), Some(Val::T(Some(v))) if v == value)))
    }

    /// Drops the held-back rows of `table` whose column `key` holds `value`.
    pub fn drop_held(&mut self, table: &str, key: usize, value: &str) {
        for p in self.pending.iter_mut().filter(|p| p.is_for(table)) {
            p.rows.retain(|r| !matches!(r.get(key), Some(Val::T(Some(v))) if v == value));
        }
    }

    /// Runs a statement (after the pending inserts). A rebuild's writer runs it later: its
    /// error, if any, comes with the commit.
    pub async fn exec(&mut self, sql: String, binds: Vec<Val>) -> Result<(), DbError> {
        self.flush().await?;
        match &mut self.target {
            Target::Sqlx(conn) => {
                query(sql, binds).execute(&mut **conn).await?;
            }
            Target::Pipe(pipe) => pipe.exec(sql, binds).await?,
        }
        Ok(())
    }

    /// Sends the pending inserts.
    pub async fn flush(&mut self) -> Result<(), DbError> {
        for p in std::mem::take(&mut self.pending) {
            self.send(p).await?;
        }
        Ok(())
    }

    /// Sends rows: to sqlx as multi-row INSERTs of the fixed sizes, to a rebuild's writer
    /// as one statement to run for each row.
    async fn send(&mut self, p: Pending) -> Result<(), DbError> {
        let conn = match &mut self.target {
            Target::Sqlx(conn) => &mut **conn,
            Target::Pipe(pipe) => {
                let marks = vec!["?"; p.width].join(", ");
                return pipe.rows(format!("INSERT INTO {} VALUES ({marks}) {}", p.table, p.tail), p.rows).await;
            }
        };
        let mut rows = p.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let left = rows.len();
            let size = CHUNKS.iter().copied().find(|c| *c <= left).unwrap_or(1);
            let mut sql = format!("INSERT INTO {} VALUES ", p.table);
            for r in 0..size {
                sql.push_str(if r == 0 { "(" } else { ", (" });
                for c in 0..p.width {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    // sqlx looks up every named SQLite parameter by name (quadratic in
                    // a wide statement); plain `?` binds by position.
                    match self.kind {
                        DbKind::Sqlite => sql.push('?'),
                        DbKind::Postgres => sql.push_str(&format!("${}", r * p.width + c + 1)),
                    }
                }
                sql.push(')');
            }
            sql.push(' ');
            sql.push_str(p.tail);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in rows.by_ref().take(size) {
                for v in row {
                    q = bind(q, v);
                }
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// A statement with its values bound, to run on a pool or connection.
pub(crate) fn query(sql: String, binds: Vec<Val>) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    binds.into_iter().fold(sqlx::query(sqlx::AssertSqlSafe(sql)), bind)
}

/// Binds a value to a query or a scalar query.
trait BindVal: Sized {
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

fn bind<Q: BindVal>(q: Q, v: Val) -> Q {
    match v {
        Val::I(i) => q.bind_i(i),
        Val::T(t) => q.bind_t(t),
    }
}

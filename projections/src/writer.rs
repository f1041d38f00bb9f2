//! The transaction projections write through: plain inserts held back and sent together,
//! lookups remembered, to a sqlx connection (the live path, and a rebuild on PostgreSQL) or to
//! a rebuild's SQLite writer thread ([`crate::pipe`]).

use crate::db::{self, DbError, DbKind, Val};
use crate::pipe::Pipe;

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
    Pipe(&'c Pipe),
}

impl<'c> Writer<'c> {
    pub fn new(conn: &'c mut sqlx::AnyConnection, kind: DbKind) -> Self {
        Self::to(Target::Sqlx(conn), kind)
    }

    pub(crate) fn piped(pipe: &'c Pipe) -> Self {
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
                    q = db::bind(q, b);
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
                db::query(sql, binds).execute(&mut **conn).await?;
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
                    q = db::bind(q, v);
                }
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

//! A rebuild's writer on SQLite: a connection of its own (rusqlite) on a thread of its own,
//! fed statements through a channel.
//!
//! Why not sqlx's connection, as everywhere else: a rebuild writes a million rows, and there
//! every cost per statement counts.
//! - The applying task does not wait for a statement unless it needs its answer (a lookup,
//!   a claim, the commit), so building rows and writing them run on both cores.
//! - Each row is one run of a prepared statement. A statement of one row needs no statement
//!   journal, and FTS5 keeps its pending terms in memory until its buffer fills or the
//!   transaction commits, instead of writing a segment for every statement.
//! - Values are bound straight from the rows, without sqlx's two copies.
//!
//! The SQL is the same text the live path runs. A statement that fails poisons the
//! transaction: what follows is skipped, and the commit reports the first error and rolls
//! back; the caller then applies the group again through the live path, which names the
//! event.

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::{DbError, Val};

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// How a transaction ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Committed {
    Yes,
    /// A claim found its row moved: rolled back.
    Raced,
    /// A statement failed (the first such error): rolled back.
    Failed(String),
}

enum Op {
    /// One statement run once for each row.
    Rows(String, Vec<Vec<Val>>),
    /// One statement.
    Exec(String, Vec<Val>),
    /// The first column of the first row, as text.
    Query(String, Vec<Val>, Reply<Option<String>>),
    /// A statement that must change exactly one row, or the transaction has raced.
    Claim(String, Vec<Val>),
    Begin,
    Commit(oneshot::Sender<Committed>),
    Rollback(Reply<()>),
}

/// Statements waiting for the writer thread. Each holds up to 1,024 rows, so this bounds
/// what the applying task can run ahead by.
const QUEUE: usize = 8;

/// The writer thread and the way to it.
pub(crate) struct Pipe {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipe {
    /// Opens the database file on a new thread.
    pub(crate) fn open(path: &Path) -> Result<Pipe, DbError> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sqlite)?;
        // As the pool's connections (`ReadDb::open`), with fewer, larger WAL checkpoints:
        // each one syncs the WAL and the database file and writes back every page the
        // transactions since touched (the WAL may grow to 256 MB meanwhile).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; \
             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 65536;",
        )
        .map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(64);
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("rebuild-sqlite".into())
            .spawn(move || serve(conn, rx))
            .map_err(|e| DbError::Sqlite(format!("cannot start the rebuild's writer thread: {e}")))?;
        Ok(Pipe { tx: Some(tx), thread: Some(thread) })
    }

    async fn send(&self, op: Op) -> Result<(), DbError> {
        match &self.tx {
            Some(tx) => tx.send(op).await.map_err(|_| gone()),
            None => Err(gone()),
        }
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, DbError> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply)).await?;
        answer.await.map_err(|_| gone())?.map_err(DbError::Sqlite)
    }

    /// Queues `sql` to run once for each row.
    pub(crate) async fn rows(&self, sql: String, rows: Vec<Vec<Val>>) -> Result<(), DbError> {
        self.send(Op::Rows(sql, rows)).await
    }

    /// Queues a statement.
    pub(crate) async fn exec(&self, sql: String, binds: Vec<Val>) -> Result<(), DbError> {
        self.send(Op::Exec(sql, binds)).await
    }

    /// Queues a statement that must change exactly one row: if it does not, the commit
    /// answers [`Committed::Raced`] and rolls back.
    pub(crate) async fn claim(&self, sql: String, binds: Vec<Val>) -> Result<(), DbError> {
        self.send(Op::Claim(sql, binds)).await
    }

    /// The first column of the first row, as text.
    pub(crate) async fn query(&self, sql: String, binds: Vec<Val>) -> Result<Option<String>, DbError> {
        self.ask(|r| Op::Query(sql, binds, r)).await
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(&self) -> Result<(), DbError> {
        self.send(Op::Begin).await
    }

    /// Commits, or rolls back and reports the transaction's first failure.
    pub(crate) async fn commit(&self) -> Result<Committed, DbError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Commit(reply)).await?;
        answer.await.map_err(|_| gone())
    }

    pub(crate) async fn rollback(&self) -> Result<(), DbError> {
        self.ask(Op::Rollback).await
    }

    /// Ends the thread, after what is queued (an open transaction is rolled back).
    pub(crate) fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.stop();
    }
}

fn gone() -> DbError {
    DbError::Sqlite("the rebuild's SQLite writer thread stopped".into())
}

fn sqlite(e: rusqlite::Error) -> DbError {
    DbError::Sqlite(e.to_string())
}

/// The writer thread: runs the operations in order until the channel closes.
fn serve(conn: rusqlite::Connection, mut rx: mpsc::Receiver<Op>) {
    // The first failure of the open transaction: later statements are skipped.
    let mut failed: Option<Committed> = None;
    while let Some(op) = rx.blocking_recv() {
        match op {
            Op::Rows(sql, rows) if failed.is_none() => {
                if let Err(e) = run_rows(&conn, &sql, &rows) {
                    failed = Some(Committed::Failed(format!("{e} (in `{sql}`)")));
                }
            }
            Op::Exec(sql, binds) if failed.is_none() => {
                if let Err(e) = run(&conn, &sql, &binds) {
                    failed = Some(Committed::Failed(format!("{e} (in `{sql}`)")));
                }
            }
            Op::Claim(sql, binds) if failed.is_none() => match run(&conn, &sql, &binds) {
                Ok(1) => {}
                Ok(_) => failed = Some(Committed::Raced),
                Err(e) => failed = Some(Committed::Failed(format!("{e} (in `{sql}`)"))),
            },
            Op::Query(sql, binds, reply) => {
                let _ = reply.send(query(&conn, &sql, &binds).map_err(|e| format!("{e} (in `{sql}`)")));
            }
            Op::Begin => {
                failed = conn.execute_batch("BEGIN IMMEDIATE").err().map(|e| Committed::Failed(e.to_string()));
            }
            Op::Commit(reply) => {
                let result = match failed.take() {
                    Some(f) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        f
                    }
                    None => match conn.execute_batch("COMMIT") {
                        Ok(()) => Committed::Yes,
                        Err(e) => {
                            let _ = conn.execute_batch("ROLLBACK");
                            Committed::Failed(e.to_string())
                        }
                    },
                };
                let _ = reply.send(result);
            }
            Op::Rollback(reply) => {
                failed = None;
                // Without a transaction open there is nothing to undo.
                let _ = conn.execute_batch("ROLLBACK");
                let _ = reply.send(Ok(()));
            }
            // The transaction failed: skipped.
            Op::Rows(..) | Op::Exec(..) | Op::Claim(..) => {}
        }
    }
}

fn run_rows(conn: &rusqlite::Connection, sql: &str, rows: &[Vec<Val>]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            bind(&mut stmt, i + 1, v)?;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// Binds `$1`, `$2`… by name (SQLite numbers named parameters by first appearance, which
/// need not be their order), or `?` by position.
fn bind_all(stmt: &mut rusqlite::Statement<'_>, binds: &[Val]) -> rusqlite::Result<()> {
    for (i, v) in binds.iter().enumerate() {
        let index = stmt.parameter_index(&format!("${}", i + 1))?.unwrap_or(i + 1);
        bind(stmt, index, v)?;
    }
    Ok(())
}

fn bind(stmt: &mut rusqlite::Statement<'_>, index: usize, v: &Val) -> rusqlite::Result<()> {
    match v {
        Val::I(i) => stmt.raw_bind_parameter(index, *i),
        Val::T(t) => stmt.raw_bind_parameter(index, t.as_deref()),
    }
}

fn run(conn: &rusqlite::Connection, sql: &str, binds: &[Val]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind_all(&mut stmt, binds)?;
    stmt.raw_execute()
}

fn query(conn: &rusqlite::Connection, sql: &str, binds: &[Val]) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind_all(&mut stmt, binds)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => row.get::<_, Option<String>>(0),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pipe_on(dir: &tempfile::TempDir) -> Pipe {
        let path = dir.path().join("read.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (a TEXT, b BIGINT); CREATE TABLE c (name TEXT PRIMARY KEY, position BIGINT)",
        )
        .unwrap();
        conn.execute("INSERT INTO c VALUES ('p', 7)", []).unwrap();
        Pipe::open(&path).unwrap()
    }

    fn count(dir: &tempfile::TempDir) -> i64 {
        let conn = rusqlite::Connection::open(dir.path().join("read.db")).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_whatever_their_order_in_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = pipe_on(&dir).await;
        pipe.begin().await.unwrap();
        pipe.exec("INSERT INTO t (b, a) VALUES ($2, $1)".into(), vec![Val::from("one"), Val::from(1)]).await.unwrap();
        pipe.rows("INSERT INTO t VALUES (?, ?)".into(), vec![vec![Val::from("two"), Val::from(2)]]).await.unwrap();
        let b = pipe.query("SELECT CAST(b AS TEXT) FROM t WHERE a = $1".into(), vec![Val::from("one")]).await.unwrap();
        assert_eq!(b.as_deref(), Some("1"));
        let none = pipe.query("SELECT a FROM t WHERE b = $1".into(), vec![Val::from(3)]).await.unwrap();
        assert_eq!(none, None);
        assert_eq!(pipe.commit().await.unwrap(), Committed::Yes);
        pipe.close();
        assert_eq!(count(&dir), 2);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_the_commit_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = pipe_on(&dir).await;
        pipe.begin().await.unwrap();
        pipe.rows("INSERT INTO t VALUES (?, ?)".into(), vec![vec![Val::from("kept?"), Val::from(1)]]).await.unwrap();
        pipe.exec("INSERT INTO missing VALUES ($1)".into(), vec![Val::from(1)]).await.unwrap();
        // Skipped: the transaction has failed.
        pipe.rows("INSERT INTO t VALUES (?, ?)".into(), vec![vec![Val::from("after"), Val::from(2)]]).await.unwrap();
        match pipe.commit().await.unwrap() {
            Committed::Failed(e) => assert!(e.contains("no such table: missing"), "{e}"),
            other => panic!("committed: {other:?}"),
        }
        // The next transaction starts clean.
        pipe.begin().await.unwrap();
        pipe.rows("INSERT INTO t VALUES (?, ?)".into(), vec![vec![Val::from("next"), Val::from(3)]]).await.unwrap();
        assert_eq!(pipe.commit().await.unwrap(), Committed::Yes);
        pipe.close();
        assert_eq!(count(&dir), 1);
    }

    #[tokio::test]
    async fn a_claim_that_changes_no_row_is_a_race() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = pipe_on(&dir).await;
        let claim = "UPDATE c SET position = position WHERE name = $1 AND position = $2";
        pipe.begin().await.unwrap();
        pipe.claim(claim.into(), vec![Val::from("p"), Val::from(7)]).await.unwrap();
        assert_eq!(pipe.commit().await.unwrap(), Committed::Yes);
        pipe.begin().await.unwrap();
        pipe.claim(claim.into(), vec![Val::from("p"), Val::from(6)]).await.unwrap();
        pipe.rows("INSERT INTO t VALUES (?, ?)".into(), vec![vec![Val::from("raced"), Val::from(1)]]).await.unwrap();
        assert_eq!(pipe.commit().await.unwrap(), Committed::Raced);
        pipe.close();
        assert_eq!(count(&dir), 0);
    }
}

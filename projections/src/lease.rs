//! Who runs a singleton task when several nodes share one PostgreSQL: a session advisory lock
//! on a connection of its own, which doubles as the lease (if the connection is gone, so is
//! the lock, and another node takes over). On SQLite a hub has one node, so the lease is
//! always granted. Projections take one each (`projection name`), and so does the federation
//! sender of each peer (`federation:<peer>`).

use sqlx::{AnyConnection, Connection};

use crate::db::{DbKind, ReadDb};

/// A held lease; dropping it releases the lock (its connection closes).
pub struct Lease {
    conn: Option<AnyConnection>,
}

impl Lease {
    /// Takes the lease named `name` if no other node holds it.
    pub async fn try_take(db: &ReadDb, name: &str) -> Result<Option<Lease>, sqlx::Error> {
        if db.kind != DbKind::Postgres {
            return Ok(Some(Lease { conn: None }));
        }
        let mut conn = db.pool.acquire().await?.detach();
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key(name)).fetch_one(&mut conn).await?;
        Ok(got.then_some(Lease { conn: Some(conn) }))
    }

    /// Whether the lease still holds: its connection still answers.
    pub async fn holds(&mut self) -> bool {
        match self.conn.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => true,
        }
    }
}

/// The advisory lock's key for a lease name.
fn key(name: &str) -> i64 {
    name.bytes().fold(0x4f47_i64, |h, b| h.wrapping_mul(31).wrapping_add(i64::from(b)))
}

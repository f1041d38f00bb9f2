//! The reads both SQL adapters share: the same SQL (`$n` placeholders, which SQLite accepts
//! too) over either pool.

use openguild_domain::{EventId, StreamId};
use sqlx::{Database, Pool};

use crate::{Direction, StoreError, StoredEvent, clamp, row_to_event};

const COLUMNS: &str = "position, id, core, body, signatures";

/// `read_stream` on a pool.
pub(crate) async fn read_stream<DB: Database>(
    pool: &Pool<DB>,
    stream: &StreamId,
    from_seq: u64,
    limit: usize,
    direction: Direction,
) -> Result<Vec<StoredEvent>, StoreError>
where
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let sql = match direction {
        Direction::Forward => {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND seq >= $2 ORDER BY seq LIMIT $3")
        }
        Direction::Backward => {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3")
        }
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(stream.to_string())
        .bind(clamp(from_seq))
        .bind(clamp(limit as u64))
        .fetch_all(pool)
        .await?;
    rows.iter().map(row_to_event).collect()
}

/// `read_all` on a pool.
pub(crate) async fn read_all<DB: Database>(
    pool: &Pool<DB>,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError>
where
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let sql = format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2");
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(clamp(after)).bind(clamp(limit as u64)).fetch_all(pool).await?;
    rows.iter().map(row_to_event).collect()
}

/// `get` on a pool.
pub(crate) async fn get<DB: Database>(pool: &Pool<DB>, id: &EventId) -> Result<Option<StoredEvent>, StoreError>
where
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB>,
{
    let sql = format!("SELECT {COLUMNS} FROM events WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_bytes().to_vec()).fetch_optional(pool).await?;
    row.as_ref().map(row_to_event).transpose()
}

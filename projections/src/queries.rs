//! Reads of the read models for the layers above, so SQL stays in this crate.

use openguild_domain::{ChannelId, EventId, GuildId};
use sqlx::Row;

use crate::{ProjectionError, ReadDb};

/// The outbox of `peer` after cursor `since`: `(position, event id)`, in order.
pub async fn outbox_page(
    db: &ReadDb,
    peer: &str,
    since: u64,
    limit: u32,
) -> Result<Vec<(u64, EventId)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT position, event_id FROM outbox WHERE peer = $1 AND position > $2 ORDER BY position LIMIT $3",
    )
    .bind(peer)
    .bind(i64::try_from(since).unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let position: i64 = row.try_get(0)?;
            let id: String = row.try_get(1)?;
            let id =
                id.parse().map_err(|e| ProjectionError::Corrupt(format!("outbox row at position {position}: {e}")))?;
            Ok((position as u64, id))
        })
        .collect()
}

/// The guild a channel belongs to, if the directory knows the channel.
pub async fn channel_guild(db: &ReadDb, channel: ChannelId) -> Result<Option<GuildId>, ProjectionError> {
    let found: Option<String> = sqlx::query_scalar("SELECT guild FROM dir_channels WHERE id = $1")
        .bind(channel.to_string())
        .fetch_optional(&db.pool)
        .await?;
    found
        .map(|g| g.parse().map_err(|e| ProjectionError::Corrupt(format!("directory row of channel {channel}: {e}"))))
        .transpose()
}

//! Reads of the read models for the layers above, so SQL stays in this crate.

use openguild_domain::{ChannelId, EventId, GuildId, InviteCode, MessageId, ReportId, UserId};
use sqlx::Row;

use crate::{DbKind, ProjectionError, ReadDb};

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

/// The channels of every DM the directory knows.
pub async fn dm_channels(db: &ReadDb) -> Result<Vec<ChannelId>, ProjectionError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM dir_channels WHERE kind IN ('dm', 'group_dm')").fetch_all(&db.pool).await?;
    ids.iter().map(|c| parse(c, "directory channel row")).collect()
}

/// Every voice channel the directory knows, with its guild.
pub async fn voice_channels(db: &ReadDb) -> Result<Vec<(ChannelId, GuildId)>, ProjectionError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, guild FROM dir_channels WHERE kind = 'voice'").fetch_all(&db.pool).await?;
    rows.iter().map(|(c, g)| Ok((parse(c, "directory channel row")?, parse(g, "directory channel row")?))).collect()
}

/// Someone in a voice channel's room (the `voice` read model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceSeatRow {
    pub channel: ChannelId,
    pub user: UserId,
    pub joined_at: u64,
    pub self_muted: bool,
    pub self_deafened: bool,
    pub server_muted: bool,
    pub server_deafened: bool,
    pub camera: bool,
    pub screen_share: bool,
}

/// Who is in each of `channels`' rooms, by the time they joined.
pub async fn voice_rosters(db: &ReadDb, channels: &[ChannelId]) -> Result<Vec<VoiceSeatRow>, ProjectionError> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=channels.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT channel, user_id, joined_at, self_muted, self_deafened, server_muted, server_deafened, camera, \
         screen_share FROM vc_seats WHERE channel IN ({}) ORDER BY joined_at, user_id",
        marks.join(", ")
    );
    let mut q = sqlx::query_as::<_, (String, String, i64, i64, i64, i64, i64, i64, i64)>(sqlx::AssertSqlSafe(sql));
    for c in channels {
        q = q.bind(c.to_string());
    }
    q.fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|(channel, user, joined_at, sm, sd, vm, vd, camera, screen)| {
            Ok(VoiceSeatRow {
                channel: parse(&channel, "voice seat row")?,
                user: parse(&user, "voice seat row")?,
                joined_at: joined_at as u64,
                self_muted: sm != 0,
                self_deafened: sd != 0,
                server_muted: vm != 0,
                server_deafened: vd != 0,
                camera: camera != 0,
                screen_share: screen != 0,
            })
        })
        .collect()
}

/// The guilds `user` is a member of, by id.
pub async fn guilds_of(db: &ReadDb, user: &UserId) -> Result<Vec<GuildId>, ProjectionError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT guild FROM dir_members WHERE user_id = $1 ORDER BY joined_at, guild")
            .bind(user.as_str())
            .fetch_all(&db.pool)
            .await?;
    ids.iter().map(|g| parse(g, "directory member row")).collect()
}

/// One message of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub id: MessageId,
    pub position: u64,
    pub channel: ChannelId,
    pub author: UserId,
    /// `None` once deleted (or erased).
    pub body: Option<String>,
    pub reply_to: Option<MessageId>,
    pub created_at: u64,
    pub edited_at: Option<u64>,
    pub deleted: bool,
    pub pinned: bool,
    /// Emoji with their count, in order of first use.
    pub reactions: Vec<(String, u64)>,
    /// The emoji the reader reacted with (filled by [`mark_mine`]; empty otherwise).
    pub mine: Vec<String>,
    /// The files shown with it, in order.
    pub attachments: Vec<openguild_domain::body::Attachment>,
}

/// Which page of a channel's messages, by position.
#[derive(Clone, Copy, Debug)]
pub enum Page {
    /// The newest `limit` messages before `before` (all if `None`), returned oldest first.
    Last { before: Option<u64>, limit: u32 },
    /// The oldest `limit` messages after `after`, oldest first.
    First { after: Option<u64>, limit: u32 },
}

const MESSAGE_COLUMNS: &str = "id, position, channel, author, body, reply_to, created_at, edited_at, redacted, pinned";

/// A page of a channel's messages, oldest first, with their reactions.
pub async fn messages(db: &ReadDb, channel: ChannelId, page: Page) -> Result<Vec<MessageRow>, ProjectionError> {
    let (sql, bound, limit) = match page {
        Page::Last { before, limit } => (
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM tl_messages WHERE channel = $1 AND position < $2 \
                 ORDER BY position DESC LIMIT $3"
            ),
            before.unwrap_or(i64::MAX as u64),
            limit,
        ),
        Page::First { after, limit } => (
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM tl_messages WHERE channel = $1 AND position > $2 \
                 ORDER BY position LIMIT $3"
            ),
            after.unwrap_or(0),
            limit,
        ),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(channel.to_string())
        .bind(i64::try_from(bound).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&db.pool)
        .await?;
    let mut out = rows.iter().map(message_row).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|m| m.position);
    with_reactions(db, &mut out).await?;
    Ok(out)
}

/// Fills in which of `messages`' reactions are `user`'s: one statement for the page.
pub async fn mark_mine(db: &ReadDb, user: &UserId, messages: &mut [MessageRow]) -> Result<(), ProjectionError> {
    if messages.iter().all(|m| m.reactions.is_empty()) {
        return Ok(());
    }
    let ids: Vec<String> = messages.iter().filter(|m| !m.reactions.is_empty()).map(|m| m.id.to_string()).collect();
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql =
        format!("SELECT message, emoji FROM tl_reactions WHERE user_id = $1 AND message IN ({})", marks.join(", "));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user.as_str());
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(&db.pool).await?;
    for row in rows {
        let (message, emoji): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(m) = messages.iter_mut().find(|m| m.id.to_string() == message) {
            m.mine.push(emoji);
        }
    }
    Ok(())
}

/// The message (and its channel) a file is attached to, if any.
pub async fn attachment_message(
    db: &ReadDb,
    media: &openguild_domain::MediaId,
) -> Result<Option<(MessageId, ChannelId)>, ProjectionError> {
    let row: Option<(String, String)> = sqlx::query_as("SELECT message, channel FROM tl_attachments WHERE media = $1")
        .bind(media.to_string())
        .fetch_optional(&db.pool)
        .await?;
    row.map(|(m, c)| Ok((parse(&m, "attachment row")?, parse(&c, "attachment row")?))).transpose()
}

/// A thread's messages not deleted and the time of its newest (ms), from the timeline.
pub async fn thread_stats(db: &ReadDb, thread: ChannelId) -> Result<(u64, Option<u64>), ProjectionError> {
    let (count, last): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MAX(created_at) FROM tl_messages WHERE channel = $1 AND redacted = 0")
            .bind(thread.to_string())
            .fetch_one(&db.pool)
            .await?;
    Ok((count as u64, last.map(|l| l as u64)))
}

/// Where a person stands in a channel: how much is new since their read marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The last message they marked read (`None`: never, or it is gone).
    pub last_read: Option<MessageId>,
    /// Messages after the marker by others, not deleted, counted up to [`UNREAD_CAP`].
    pub unread: u32,
    /// Of those, the ones that mention them or everyone, up to [`UNREAD_CAP`].
    pub mentions: u32,
}

/// Counting stops here: "999+" is as useful as the exact figure, and the cost of a count is
/// that of the messages it reads, never of the whole backlog.
pub const UNREAD_CAP: u32 = 1_000;

/// `user`'s read state in each of `channels` (same order): two bounded range counts on the
/// `(channel, position)` keys of the timeline and of `reads`' mentions.
pub async fn read_states(
    db: &ReadDb,
    user: &UserId,
    channels: &[ChannelId],
) -> Result<Vec<ReadState>, ProjectionError> {
    read_states_with_roles(db, user, &[], channels).await
}

/// [`read_states`], where mentions of `roles` (the user's, in these channels' guild) count
/// as the user's too.
pub async fn read_states_with_roles(
    db: &ReadDb,
    user: &UserId,
    roles: &[openguild_domain::RoleId],
    channels: &[ChannelId],
) -> Result<Vec<ReadState>, ProjectionError> {
    let role_keys: Vec<String> = roles.iter().map(crate::reads::role_key).collect();
    let also = (0..role_keys.len()).map(|i| format!(" OR user_id = ${}", i + 6)).collect::<String>();
    let mut out = Vec::with_capacity(channels.len());
    for channel in channels {
        let (c, me) = (channel.to_string(), user.as_str());
        let marker: Option<String> =
            sqlx::query_scalar("SELECT message FROM rd_markers WHERE user_id = $1 AND channel = $2")
                .bind(me)
                .bind(&c)
                .fetch_optional(&db.pool)
                .await?;
        let mut state = ReadState::default();
        let mut after = 0i64;
        if let Some(m) = marker {
            let id: MessageId = parse(&m, "read marker")?;
            let at: Option<i64> = sqlx::query_scalar("SELECT position FROM tl_messages WHERE mkey = $1 AND id = $2")
                .bind(crate::db::id_key(&id))
                .bind(&m)
                .fetch_optional(&db.pool)
                .await?;
            if let Some(at) = at {
                after = at;
                state.last_read = Some(id);
            }
        }
        let unread: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tl_messages WHERE channel = $1 AND position > $2 AND redacted = 0 \
             AND author <> $3 LIMIT $4) AS unread",
        )
        .bind(&c)
        .bind(after)
        .bind(me)
        .bind(i64::from(UNREAD_CAP))
        .fetch_one(&db.pool)
        .await?;
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT position FROM rd_mentions WHERE channel = $1 AND position > $2 \
             AND (user_id = $3 OR user_id = $4{also}) AND author <> $3 LIMIT $5) AS mentions"
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&c)
            .bind(after)
            .bind(me)
            .bind(crate::reads::EVERYONE)
            .bind(i64::from(UNREAD_CAP));
        for key in &role_keys {
            query = query.bind(key.as_str());
        }
        let mentions: i64 = query.fetch_one(&db.pool).await?;
        state.unread = u32::try_from(unread).unwrap_or(UNREAD_CAP);
        state.mentions = u32::try_from(mentions).unwrap_or(UNREAD_CAP);
        out.push(state);
    }
    Ok(out)
}

/// The messages pinned in a channel and not deleted, newest first (at most 50, as on Discord).
pub async fn pins(db: &ReadDb, channel: ChannelId) -> Result<Vec<MessageRow>, ProjectionError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM tl_messages WHERE channel = $1 AND pinned = 1 AND redacted = 0 \
         ORDER BY position DESC LIMIT 50"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(channel.to_string()).fetch_all(&db.pool).await?;
    let mut out = rows.iter().map(message_row).collect::<Result<Vec<_>, _>>()?;
    with_reactions(db, &mut out).await?;
    Ok(out)
}

/// Messages by id (those the timeline knows), in the order asked.
pub async fn messages_by_id(db: &ReadDb, ids: &[MessageId]) -> Result<Vec<MessageRow>, ProjectionError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM tl_messages WHERE mkey = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::db::id_key(id))
            .bind(id.to_string())
            .fetch_optional(&db.pool)
            .await?;
        if let Some(row) = row {
            out.push(message_row(&row)?);
        }
    }
    with_reactions(db, &mut out).await?;
    Ok(out)
}

/// The position of the newest message still shown (not deleted) in each of `channels`,
/// for unread markers; channels without one are left out. One statement per 100 channels,
/// each channel a backward step on the `(channel, position)` index.
pub async fn last_message_positions(
    db: &ReadDb,
    channels: &[ChannelId],
) -> Result<Vec<(ChannelId, u64)>, ProjectionError> {
    let mut out = Vec::with_capacity(channels.len());
    for chunk in channels.chunks(100) {
        let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT c.id, (SELECT m.position FROM tl_messages m WHERE m.channel = c.id AND m.redacted = 0 \
             ORDER BY m.position DESC LIMIT 1) FROM tl_channels c WHERE c.id IN ({list})"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for channel in chunk {
            query = query.bind(channel.to_string());
        }
        for row in query.fetch_all(&db.pool).await? {
            if let Some(position) = row.try_get::<Option<i64>, _>(1)? {
                out.push((parse(&row.try_get::<String, _>(0)?, "timeline channel row")?, position as u64));
            }
        }
    }
    Ok(out)
}

async fn with_reactions(db: &ReadDb, messages: &mut [MessageRow]) -> Result<(), ProjectionError> {
    for m in messages.iter_mut() {
        let metas: Vec<String> = sqlx::query_scalar("SELECT meta FROM tl_attachments WHERE message = $1 ORDER BY ord")
            .bind(m.id.to_string())
            .fetch_all(&db.pool)
            .await?;
        m.attachments = metas
            .iter()
            .map(|j| serde_json::from_str(j).map_err(|e| ProjectionError::Corrupt(format!("attachment row: {e}"))))
            .collect::<Result<_, _>>()?;
        let rows = sqlx::query(
            "SELECT emoji, COUNT(*), MIN(position) AS first FROM tl_reactions WHERE message = $1 \
             GROUP BY emoji ORDER BY first",
        )
        .bind(m.id.to_string())
        .fetch_all(&db.pool)
        .await?;
        m.reactions = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64)))
            .collect::<Result<_, sqlx::Error>>()?;
    }
    Ok(())
}

fn message_row(row: &sqlx::any::AnyRow) -> Result<MessageRow, ProjectionError> {
    let id: String = row.try_get(0)?;
    let what = "timeline row";
    Ok(MessageRow {
        id: parse(&id, what)?,
        position: row.try_get::<i64, _>(1)? as u64,
        channel: parse(&row.try_get::<String, _>(2)?, what)?,
        author: parse(&row.try_get::<String, _>(3)?, what)?,
        body: row.try_get(4)?,
        reply_to: row.try_get::<Option<String>, _>(5)?.map(|r| parse(&r, what)).transpose()?,
        created_at: row.try_get::<i64, _>(6)? as u64,
        edited_at: row.try_get::<Option<i64>, _>(7)?.map(|t| t as u64),
        deleted: row.try_get::<i64, _>(8)? != 0,
        pinned: row.try_get::<i64, _>(9)? != 0,
        reactions: Vec::new(),
        mine: Vec::new(),
        attachments: Vec::new(),
    })
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub position: u64,
    pub event_id: String,
    pub kind: String,
    pub actor: String,
    pub target: Option<String>,
    pub channel: Option<String>,
    pub reason: String,
    pub ts: u64,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which audit entries: all filters are optional and combine with AND.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub kinds: Vec<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

/// A guild's audit log, newest first, after cursor `before` (a position).
pub async fn audit_page(
    db: &ReadDb,
    guild: GuildId,
    filter: &AuditFilter,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<AuditRow>, ProjectionError> {
    let mut sql = "SELECT position, event_id, kind, actor, target, channel, reason, ts, before_value, after_value \
                   FROM audit_log WHERE guild = $1 AND position < $2"
        .to_owned();
    let mut n = 2;
    let mut next = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&clause.replace('?', &format!("${n}")));
    };
    if filter.actor.is_some() {
        next(&mut sql, " AND actor = ?");
    }
    if filter.target.is_some() {
        next(&mut sql, " AND target = ?");
    }
    if filter.since_ms.is_some() {
        next(&mut sql, " AND ts >= ?");
    }
    if filter.until_ms.is_some() {
        next(&mut sql, " AND ts <= ?");
    }
    if !filter.kinds.is_empty() {
        sql.push_str(" AND kind IN (");
        for i in 0..filter.kinds.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            next(&mut sql, "?");
        }
        sql.push(')');
    }
    next(&mut sql, " ORDER BY position DESC LIMIT ?");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(guild.to_string())
        .bind(i64::try_from(before.unwrap_or(i64::MAX as u64)).unwrap_or(i64::MAX));
    if let Some(a) = &filter.actor {
        q = q.bind(a.clone());
    }
    if let Some(t) = &filter.target {
        q = q.bind(t.clone());
    }
    if let Some(s) = filter.since_ms {
        q = q.bind(s as i64);
    }
    if let Some(u) = filter.until_ms {
        q = q.bind(u as i64);
    }
    for k in &filter.kinds {
        q = q.bind(k.clone());
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                position: r.try_get::<i64, _>(0)? as u64,
                event_id: r.try_get(1)?,
                kind: r.try_get(2)?,
                actor: r.try_get(3)?,
                target: r.try_get(4)?,
                channel: r.try_get(5)?,
                reason: r.try_get(6)?,
                ts: r.try_get::<i64, _>(7)? as u64,
                before: r.try_get(8)?,
                after: r.try_get(9)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// One report in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub id: String,
    pub reporter: String,
    pub target_user: String,
    pub target_channel: Option<String>,
    pub target_message: Option<String>,
    pub reason: String,
    pub status: String,
    pub action: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub filed_at: u64,
    pub resolved_at: Option<u64>,
    pub assignee: Option<String>,
}

/// A guild's reports, oldest first; only those with `status` if given.
pub async fn reports(db: &ReadDb, guild: GuildId, status: Option<&str>) -> Result<Vec<ReportRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT id, reporter, target_user, target_channel, target_message, reason, status, action, resolved_by, \
         resolution, filed_at, resolved_at, assignee FROM reports WHERE guild = $1 AND ($2 = '' OR status = $2) ORDER BY position",
    )
    .bind(guild.to_string())
    .bind(status.unwrap_or_default())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReportRow {
                id: r.try_get(0)?,
                reporter: r.try_get(1)?,
                target_user: r.try_get(2)?,
                target_channel: r.try_get(3)?,
                target_message: r.try_get(4)?,
                reason: r.try_get(5)?,
                status: r.try_get(6)?,
                action: r.try_get(7)?,
                resolved_by: r.try_get(8)?,
                resolution: r.try_get(9)?,
                filed_at: r.try_get::<i64, _>(10)? as u64,
                resolved_at: r.try_get::<Option<i64>, _>(11)?.map(|t| t as u64),
                assignee: r.try_get(12)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Messages of a guild matching `query` (words, all required), newest first, before the
/// position `before`: `(message id, position)`.
pub async fn search(
    db: &ReadDb,
    guild: GuildId,
    query: &str,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<(MessageId, u64)>, ProjectionError> {
    let words: Vec<&str> = query.split_whitespace().take(16).collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let before = i64::try_from(before.unwrap_or(i64::MAX as u64)).unwrap_or(i64::MAX);
    let rows = match db.kind {
        DbKind::Sqlite => {
            // Each word quoted, so the user's text is never FTS5 syntax.
            let fts: Vec<String> = words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
            sqlx::query(
                "SELECT message_id, rowid FROM search_text WHERE search_text MATCH $1 AND guild = $2 AND rowid < $3 \
                 ORDER BY rowid DESC LIMIT $4",
            )
            .bind(fts.join(" "))
            .bind(guild.to_string())
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&db.pool)
            .await?
        }
        DbKind::Postgres => {
            sqlx::query(
                "SELECT message_id, position FROM search_text \
                 WHERE tsv @@ plainto_tsquery('simple', $1) AND guild = $2 AND position < $3 \
                 ORDER BY position DESC LIMIT $4",
            )
            .bind(words.join(" "))
            .bind(guild.to_string())
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&db.pool)
            .await?
        }
    };
    rows.iter()
        .map(|r| Ok((parse(&r.try_get::<String, _>(0)?, "search row")?, r.try_get::<i64, _>(1)? as u64)))
        .collect()
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ProjectionError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| ProjectionError::Corrupt(format!("{what}: {e}")))
}

/// The guild an invite code belongs to.
pub async fn invite_guild(db: &ReadDb, code: &InviteCode) -> Result<Option<GuildId>, ProjectionError> {
    let found: Option<String> = sqlx::query_scalar("SELECT guild FROM dir_invites WHERE code = $1 LIMIT 1")
        .bind(code.as_str())
        .fetch_optional(&db.pool)
        .await?;
    found.map(|g| parse(&g, "directory invite row")).transpose()
}

/// The guild a report was filed in.
pub async fn report_guild(db: &ReadDb, report: &ReportId) -> Result<Option<GuildId>, ProjectionError> {
    let found: Option<String> = sqlx::query_scalar("SELECT guild FROM reports WHERE id = $1")
        .bind(report.to_string())
        .fetch_optional(&db.pool)
        .await?;
    found.map(|g| parse(&g, "report row")).transpose()
}

/// Guilds archived at or before `before_ms`, by the audit log: `(guild, archived at ms)`.
pub async fn archived_guilds(db: &ReadDb, before_ms: u64) -> Result<Vec<(GuildId, u64)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT guild, MIN(ts) FROM audit_log WHERE kind = 'guild.archived' GROUP BY guild HAVING MIN(ts) <= $1",
    )
    .bind(i64::try_from(before_ms).unwrap_or(i64::MAX))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((parse(&r.try_get::<String, _>(0)?, "audit row")?, r.try_get::<i64, _>(1)? as u64)))
        .collect()
}

/// Channels archived at or before `before_ms`, by the audit log.
pub async fn archived_channels(db: &ReadDb, before_ms: u64) -> Result<Vec<ChannelId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT channel FROM audit_log WHERE kind = 'channel.archived' AND channel IS NOT NULL GROUP BY channel \
         HAVING MIN(ts) <= $1",
    )
    .bind(i64::try_from(before_ms).unwrap_or(i64::MAX))
    .fetch_all(&db.pool)
    .await?;
    ids.iter().map(|id| parse(id, "audit row")).collect()
}

/// What to erase: a whole guild or one channel.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Guild(GuildId),
    Channel(ChannelId),
}

/// Up to `limit` messages of a guild or channel whose text the timeline still holds.
pub async fn messages_with_body(db: &ReadDb, scope: Scope, limit: u32) -> Result<Vec<MessageId>, ProjectionError> {
    let (column, value) = match scope {
        Scope::Guild(g) => ("guild", g.to_string()),
        Scope::Channel(c) => ("channel", c.to_string()),
    };
    let sql = format!("SELECT id FROM tl_messages WHERE {column} = $1 AND body IS NOT NULL ORDER BY position LIMIT $2");
    let ids: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(value).bind(i64::from(limit)).fetch_all(&db.pool).await?;
    ids.iter().map(|id| parse(id, "timeline row")).collect()
}

/// Forgets the text of messages whose bodies the event store erased: the timeline shows
/// them without text and search no longer finds them, exactly as a rebuild would.
pub async fn forget_bodies(db: &ReadDb, ids: &[MessageId]) -> Result<(), ProjectionError> {
    for message in ids {
        sqlx::query("UPDATE tl_messages SET body = NULL WHERE mkey = $1 AND id = $2")
            .bind(crate::db::id_key(message))
            .bind(message.to_string())
            .execute(&db.pool)
            .await?;
        // Found as the search projection finds it on an edit.
        let (row, binds) = crate::search::row_of(db.kind, &crate::db::Tables::LIVE, message);
        crate::db::query(format!("DELETE FROM search_text WHERE {row}"), binds).execute(&db.pool).await?;
    }
    if db.kind == DbKind::Sqlite {
        // The old pages are still in the WAL file until it is checkpointed and truncated;
        // readers holding an old snapshot can delay that, so wait a moment at most and let
        // the next erasure (or the next checkpoint) finish the job.
        let mut conn = db.pool.acquire().await?;
        use sqlx::Executor;
        conn.execute("PRAGMA busy_timeout = 2000").await?;
        let checkpoint = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await;
        conn.execute("PRAGMA busy_timeout = 30000").await?;
        checkpoint?;
    }
    Ok(())
}

/// Where the worker `name` has got to in the event store (0 if it never ran).
pub async fn worker_position(db: &ReadDb, name: &str) -> Result<u64, ProjectionError> {
    let position: Option<i64> = sqlx::query_scalar("SELECT position FROM worker_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    Ok(position.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
}

/// Records that the worker `name` has done everything up to `position`.
pub async fn set_worker_position(db: &ReadDb, name: &str, position: u64) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO worker_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(name)
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Up to `limit` messages `author` posted in `guild` at or after `since_ms`, after position
/// `after`, redacted or not (a purge hides them in the timeline before it redacts them):
/// `(position, channel, message)`, in position order.
pub async fn messages_of_author(
    db: &ReadDb,
    guild: GuildId,
    author: &UserId,
    since_ms: u64,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, ChannelId, MessageId)>, ProjectionError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT position, channel, id FROM tl_messages WHERE guild = $1 AND author = $2 AND created_at >= $3 \
         AND position > $4 ORDER BY position LIMIT $5",
    )
    .bind(guild.to_string())
    .bind(author.to_string())
    .bind(i64::try_from(since_ms).unwrap_or(i64::MAX))
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter()
        .map(|(position, channel, id)| {
            Ok((u64::try_from(position).unwrap_or(0), parse(&channel, "timeline row")?, parse(&id, "timeline row")?))
        })
        .collect()
}

/// Keeps the key document `server` published (JSON), replacing the one kept before.
pub async fn save_peer_keys(db: &ReadDb, server: &str, document: &str) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO peer_keys (server, document) VALUES ($1, $2) \
         ON CONFLICT (server) DO UPDATE SET document = excluded.document",
    )
    .bind(server)
    .bind(document)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Every peer key document kept: `(server, JSON)`.
pub async fn peer_keys(db: &ReadDb) -> Result<Vec<(String, String)>, ProjectionError> {
    Ok(sqlx::query_as("SELECT server, document FROM peer_keys ORDER BY server").fetch_all(&db.pool).await?)
}

/// How many events of `peer`'s outbox lie after position `sent`.
pub async fn outbox_depth(db: &ReadDb, peer: &str, sent: u64) -> Result<u64, ProjectionError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE peer = $1 AND position > $2")
        .bind(peer)
        .bind(i64::try_from(sent).unwrap_or(i64::MAX))
        .fetch_one(&db.pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How a peer's sender is doing, as `openguild federation status` shows it.
#[derive(Clone, Debug, Default)]
pub struct PeerStatus {
    pub peer: String,
    /// When a transaction was last answered (ms).
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// The pause before the next try, after failures (0 when all is well).
    pub backoff_ms: u64,
}

/// Records that `peer` answered at `at`.
pub async fn peer_succeeded(db: &ReadDb, peer: &str, at: u64) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO peer_status (peer, last_success, backoff_ms) VALUES ($1, $2, 0) \
         ON CONFLICT (peer) DO UPDATE SET last_success = excluded.last_success, backoff_ms = 0",
    )
    .bind(peer)
    .bind(i64::try_from(at).unwrap_or(i64::MAX))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Records that sending to `peer` failed at `at` with `error`, and the pause before the next try.
pub async fn peer_failed(
    db: &ReadDb,
    peer: &str,
    at: u64,
    error: &str,
    backoff_ms: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO peer_status (peer, last_error, last_error_at, backoff_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (peer) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
         backoff_ms = excluded.backoff_ms",
    )
    .bind(peer)
    .bind(error)
    .bind(i64::try_from(at).unwrap_or(i64::MAX))
    .bind(i64::try_from(backoff_ms).unwrap_or(i64::MAX))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// A `peer_status` row: peer, last success, last error, when, backoff.
type PeerStatusRow = (String, Option<i64>, Option<String>, Option<i64>, i64);

/// Every peer's recorded sender status.
pub async fn peer_statuses(db: &ReadDb) -> Result<Vec<PeerStatus>, ProjectionError> {
    let rows: Vec<PeerStatusRow> = sqlx::query_as(
        "SELECT peer, last_success, last_error, last_error_at, backoff_ms FROM peer_status ORDER BY peer",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(peer, ok, error, error_at, backoff)| PeerStatus {
            peer,
            last_success: ok.and_then(|v| u64::try_from(v).ok()),
            last_error: error,
            last_error_at: error_at.and_then(|v| u64::try_from(v).ok()),
            backoff_ms: u64::try_from(backoff).unwrap_or(0),
        })
        .collect())
}

/// Queues a proposal (`id`, its nonce in hex; `proposal`, its JSON) for `owner`.
pub async fn queue_proposal(
    db: &ReadDb,
    id: &str,
    owner: &str,
    queued_at: u64,
    proposal: &str,
) -> Result<(), ProjectionError> {
    sqlx::query("INSERT INTO proposal_queue (id, owner, queued_at, proposal) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(owner)
        .bind(i64::try_from(queued_at).unwrap_or(i64::MAX))
        .bind(proposal)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The oldest proposal queued for `owner`: its id and JSON.
pub async fn next_proposal(db: &ReadDb, owner: &str) -> Result<Option<(String, String)>, ProjectionError> {
    Ok(sqlx::query_as("SELECT id, proposal FROM proposal_queue WHERE owner = $1 ORDER BY queued_at, id LIMIT 1")
        .bind(owner)
        .fetch_optional(&db.pool)
        .await?)
}

/// Takes a delivered (or finally refused) proposal off the queue.
pub async fn dequeue_proposal(db: &ReadDb, id: &str) -> Result<(), ProjectionError> {
    sqlx::query("DELETE FROM proposal_queue WHERE id = $1").bind(id).execute(&db.pool).await?;
    Ok(())
}

/// How many proposals wait for each owner.
pub async fn queued_proposals(db: &ReadDb) -> Result<Vec<(String, u64)>, ProjectionError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT owner, COUNT(*) FROM proposal_queue GROUP BY owner ORDER BY owner")
            .fetch_all(&db.pool)
            .await?;
    Ok(rows.into_iter().map(|(owner, n)| (owner, u64::try_from(n).unwrap_or(0))).collect())
}

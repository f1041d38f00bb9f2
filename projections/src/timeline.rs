//! `timeline`: messages with their edits, redactions, reactions, pins and reply links, paged
//! by position. A ban with a purge window hides the banned user's recent messages; an
//! erased body shows as NULL.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, guild_of, ins, note_channel};
use crate::db::{self, DbKind, Tables, Val, set};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct Timeline;

const TABLES: &[&str] = &["tl_channels", "tl_messages", "tl_reactions", "tl_attachments"];

/// Columns of a `tl_messages` row, for changing rows still held back.
const ID: usize = 1;
const BODY: usize = 6;
const EDITED_AT: usize = 11;
const REDACTED: usize = 12;

#[async_trait]
impl Projection for Timeline {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn version(&self) -> i64 {
        // 3: messages keyed by position, found by the compact key of their id.
        // 4: attachments (`tl_attachments`).
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn schema(&self, db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("tl_channels")),
            // Rows are appended by position; a message is found by `mkey` (`db::id_key`) and
            // then its id. The key's index is a UNIQUE constraint because SQLite renames those
            // with their table when a rebuild is swapped in, and a named index it would not.
            format!(
                "CREATE TABLE {} (position {}, id TEXT NOT NULL, mkey BIGINT NOT NULL, channel TEXT NOT NULL, \
                 guild TEXT NOT NULL, author TEXT NOT NULL, body TEXT, reply_to TEXT, mentions TEXT NOT NULL, \
                 mentions_everyone BIGINT NOT NULL, created_at BIGINT NOT NULL, edited_at BIGINT, redacted BIGINT NOT NULL, \
                 redacted_by TEXT, redact_reason TEXT, pinned BIGINT NOT NULL, UNIQUE (channel, position), \
                 UNIQUE (mkey, position))",
                t.n("tl_messages"),
                db::position_key(db)
            ),
            format!(
                "CREATE TABLE {} (message TEXT NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL, position BIGINT NOT NULL, \
                 PRIMARY KEY (message, emoji, user_id))",
                t.n("tl_reactions")
            ),
            // One row per attached file: the message and channel it is in (who may fetch
            // it), and what the event said of it, as JSON.
            format!(
                "CREATE TABLE {} (media TEXT PRIMARY KEY, message TEXT NOT NULL, channel TEXT NOT NULL, \
                 ord BIGINT NOT NULL, meta TEXT NOT NULL, UNIQUE (message, ord))",
                t.n("tl_attachments")
            ),
        ]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        use EventBody as E;
        let core = &e.event.core;
        let sender = core.sender.to_string();
        let ts = core.ts.as_millis() as i64;
        note_channel(c, t, "tl_channels", e).await?;
        match (&core.stream, e.event.content()) {
            (StreamId::Guild(g), E::MemberBanned { user, purge_since: Some(since), .. }) => {
                exec!(
                    c,
                    format!(
                        "UPDATE {} SET redacted = 1, body = NULL, redacted_by = $3, redact_reason = 'purged with a ban' \
                     WHERE guild = $1 AND author = $2 AND created_at >= $4 AND redacted = 0",
                        t.n("tl_messages")
                    ),
                    g.to_string(),
                    user.to_string(),
                    &sender,
                    since.as_millis() as i64
                );
            }
            (StreamId::Channel(ch), E::MessagePosted { reply_to, mentions, mentions_everyone, attachments, .. }) => {
                for (ord, a) in attachments.iter().enumerate() {
                    let meta = serde_json::to_string(a).map_err(|err| ApplyError::Invalid(err.to_string()))?;
                    ins!(
                        c,
                        t.n("tl_attachments"),
                        "ON CONFLICT DO NOTHING",
                        a.id.to_string(),
                        e.event.id.to_string(),
                        ch.to_string(),
                        ord as i64,
                        meta
                    );
                }
                let text = match &e.event.body {
                    Some(E::MessagePosted { text, .. }) => Some(text.clone()),
                    _ => None,
                };
                let mentions: Vec<String> = mentions.iter().map(|u| u.to_string()).collect();
                let mentions = serde_json::to_string(&mentions).map_err(|err| ApplyError::Invalid(err.to_string()))?;
                let Some(guild) = guild_of(c, t, "tl_channels", ch).await? else {
                    return Err(ApplyError::Invalid(format!("message in unknown channel {ch}")));
                };
                let id = c.text(e.event.id.as_bytes(), || e.event.id.to_string());
                let channel = c.text(ch.as_bytes(), || ch.to_string());
                ins!(
                    c,
                    t.n("tl_messages"),
                    "",
                    e.position as i64,
                    id,
                    db::id_key(&e.event.id),
                    channel,
                    guild,
                    &sender,
                    text,
                    reply_to.map(|r| r.to_string()),
                    mentions,
                    i64::from(*mentions_everyone),
                    ts,
                    None::<i64>,
                    0,
                    None::<String>,
                    None::<String>,
                    0
                );
            }
            (StreamId::Channel(_), E::MessageEdited { message, .. }) => {
                let text = match &e.event.body {
                    Some(E::MessageEdited { text, .. }) => Some(text.clone()),
                    _ => None,
                };
                let (id, table) = (message.to_string(), t.n("tl_messages"));
                // A message still held back is changed in place: no statement, no flush.
                let held = c.update_held(&table, ID, &id, |row| {
                    if matches!(row.get(REDACTED), Some(Val::I(Some(0)))) {
                        set(row, BODY, Val::T(text.clone()));
                        set(row, EDITED_AT, Val::I(Some(ts)));
                    }
                });
                if !held {
                    exec!(
                        c,
                        format!(
                            "UPDATE {table} SET body = $3, edited_at = $4 WHERE mkey = $1 AND id = $2 AND redacted = 0"
                        ),
                        db::id_key(message),
                        id,
                        text,
                        ts
                    );
                }
            }
            (StreamId::Channel(_), E::MessageRedacted { message, reason }) => {
                let (id, table) = (message.to_string(), t.n("tl_messages"));
                let held = c.update_held(&table, ID, &id, |row| {
                    set(row, BODY, Val::T(None));
                    set(row, REDACTED, Val::I(Some(1)));
                    set(row, REDACTED + 1, Val::T(Some(sender.clone())));
                    set(row, REDACTED + 2, Val::T(Some(reason.clone())));
                });
                if held {
                    // Its reactions came after it, so they are held back too.
                    c.drop_held(&t.n("tl_reactions"), 0, &id);
                } else {
                    exec!(
                        c,
                        format!(
                            "UPDATE {table} SET redacted = 1, body = NULL, redacted_by = $3, redact_reason = $4 \
                             WHERE mkey = $1 AND id = $2"
                        ),
                        db::id_key(message),
                        &id,
                        &sender,
                        reason
                    );
                    exec!(c, format!("DELETE FROM {} WHERE message = $1", t.n("tl_reactions")), id);
                }
            }
            (StreamId::Channel(_), E::ReactionAdded { message, emoji }) => {
                ins!(
                    c,
                    t.n("tl_reactions"),
                    "ON CONFLICT DO NOTHING",
                    message.to_string(),
                    emoji,
                    &sender,
                    e.position as i64
                );
            }
            (StreamId::Channel(_), E::ReactionRemoved { message, emoji }) => {
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE message = $1 AND emoji = $2 AND user_id = $3", t.n("tl_reactions")),
                    message.to_string(),
                    emoji,
                    &sender
                );
            }
            (StreamId::Channel(_), E::MessagePinned { message }) => {
                exec!(
                    c,
                    format!("UPDATE {} SET pinned = 1 WHERE mkey = $1 AND id = $2", t.n("tl_messages")),
                    db::id_key(message),
                    message.to_string()
                );
            }
            (StreamId::Channel(_), E::MessageUnpinned { message }) => {
                exec!(
                    c,
                    format!("UPDATE {} SET pinned = 0 WHERE mkey = $1 AND id = $2", t.n("tl_messages")),
                    db::id_key(message),
                    message.to_string()
                );
            }
            _ => {}
        }
        Ok(())
    }
}

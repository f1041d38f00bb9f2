//! `timeline`: messages with their edits, redactions, reactions, pins and reply links, paged
//! by position. A ban with a purge window hides the banned user's recent messages; an
//! erased body shows as NULL.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::db::{DbKind, Tables, Val, Writer, set};
use crate::directory::{exec, ins};
use crate::{ApplyError, Projection};

pub struct Timeline;

const TABLES: &[&str] = &["tl_channels", "tl_messages", "tl_reactions"];

#[async_trait]
impl Projection for Timeline {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn version(&self) -> i64 {
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("tl_channels")),
            format!(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, position BIGINT NOT NULL, channel TEXT NOT NULL, guild TEXT NOT NULL, \
                 author TEXT NOT NULL, body TEXT, reply_to TEXT, mentions TEXT NOT NULL, mentions_everyone BIGINT NOT NULL, \
                 created_at BIGINT NOT NULL, edited_at BIGINT, redacted BIGINT NOT NULL, redacted_by TEXT, \
                 redact_reason TEXT, pinned BIGINT NOT NULL, UNIQUE (channel, position))",
                t.n("tl_messages")
            ),
            format!(
                "CREATE TABLE {} (message TEXT NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL, position BIGINT NOT NULL, \
                 PRIMARY KEY (message, emoji, user_id))",
                t.n("tl_reactions")
            ),
        ]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        use EventBody as E;
        let core = &e.event.core;
        let sender = core.sender.to_string();
        let ts = core.ts.as_millis() as i64;
        match (&core.stream, e.event.content()) {
            (StreamId::Guild(g), E::ChannelCreated { channel, .. }) => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2)", t.n("tl_channels")),
                    channel.to_string(),
                    g.to_string()
                );
                c.remember(format!("guild-of:{channel}"), g.to_string());
            }
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
            (StreamId::Channel(ch), E::MessagePosted { reply_to, mentions, mentions_everyone, .. }) => {
                let text = match &e.event.body {
                    Some(E::MessagePosted { text, .. }) => Some(text.clone()),
                    _ => None,
                };
                let mentions: Vec<String> = mentions.iter().map(|u| u.to_string()).collect();
                let mentions = serde_json::to_string(&mentions).map_err(|err| ApplyError::Invalid(err.to_string()))?;
                let sql = format!("SELECT guild FROM {} WHERE id = $1", t.n("tl_channels"));
                let Some(guild) = c.lookup(format!("guild-of:{ch}"), sql, ch.to_string().into()).await? else {
                    return Err(ApplyError::Invalid(format!("message in unknown channel {ch}")));
                };
                ins!(
                    c,
                    t.n("tl_messages"),
                    "",
                    e.event.id.to_string(),
                    e.position as i64,
                    ch.to_string(),
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
                let held = c.update_held(&table, 0, &id, |row| {
                    if matches!(row.get(11), Some(Val::I(Some(0)))) {
                        set(row, 5, Val::T(text.clone()));
                        set(row, 10, Val::I(Some(ts)));
                    }
                });
                if !held {
                    exec!(
                        c,
                        format!("UPDATE {table} SET body = $2, edited_at = $3 WHERE id = $1 AND redacted = 0"),
                        id,
                        text,
                        ts
                    );
                }
            }
            (StreamId::Channel(_), E::MessageRedacted { message, reason }) => {
                let (id, table) = (message.to_string(), t.n("tl_messages"));
                let held = c.update_held(&table, 0, &id, |row| {
                    set(row, 5, Val::T(None));
                    set(row, 11, Val::I(Some(1)));
                    set(row, 12, Val::T(Some(sender.clone())));
                    set(row, 13, Val::T(Some(reason.clone())));
                });
                if held {
                    // Its reactions came after it, so they are held back too.
                    c.drop_held(&t.n("tl_reactions"), 0, &id);
                } else {
                    exec!(
                        c,
                        format!(
                            "UPDATE {table} SET redacted = 1, body = NULL, redacted_by = $2, redact_reason = $3 WHERE id = $1"
                        ),
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
                exec!(c, format!("UPDATE {} SET pinned = 1 WHERE id = $1", t.n("tl_messages")), message.to_string());
            }
            (StreamId::Channel(_), E::MessageUnpinned { message }) => {
                exec!(c, format!("UPDATE {} SET pinned = 0 WHERE id = $1", t.n("tl_messages")), message.to_string());
            }
            _ => {}
        }
        Ok(())
    }
}

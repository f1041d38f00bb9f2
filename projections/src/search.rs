//! `search`: message text, FTS5 on SQLite and a `tsvector` on PostgreSQL. Edited messages
//! are re-indexed; redacted and erased ones leave the index.
//!
//! On SQLite the FTS row id is the message's position, and `search_ids` maps message ids to
//! it: FTS5 cannot index the id column, and scanning it on every edit would be quadratic.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::db::{DbKind, Tables, Val, Writer, set};
use crate::directory::{exec, ins};
use crate::{ApplyError, Projection};

pub struct Search;

#[async_trait]
impl Projection for Search {
    fn name(&self) -> &'static str {
        "search"
    }

    fn version(&self) -> i64 {
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_channels", "search_ids", "search_text"]
    }

    fn schema(&self, db: DbKind, t: &Tables) -> Vec<String> {
        let channels = format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("search_channels"));
        let ids = format!("CREATE TABLE {} (message_id TEXT PRIMARY KEY, position BIGINT NOT NULL)", t.n("search_ids"));
        let text = match db {
            DbKind::Sqlite => format!(
                "CREATE VIRTUAL TABLE {} USING fts5(message_id UNINDEXED, guild UNINDEXED, channel UNINDEXED, \
                 body, tokenize = 'unicode61')",
                t.n("search_text")
            ),
            DbKind::Postgres => format!(
                "CREATE TABLE {} (message_id TEXT PRIMARY KEY, guild TEXT NOT NULL, channel TEXT NOT NULL, \
                 body TEXT NOT NULL, tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
                t.n("search_text")
            ),
        };
        vec![channels, ids, text]
    }

    async fn apply(&self, c: &mut Writer<'_>, db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        let text_table = t.n("search_text");
        // How to find a message's index row.
        let row_of = match db {
            DbKind::Sqlite => format!("rowid = (SELECT position FROM {} WHERE message_id = $1)", t.n("search_ids")),
            DbKind::Postgres => "message_id = $1".to_owned(),
        };
        match (&e.event.core.stream, e.event.content()) {
            (StreamId::Guild(g), EventBody::ChannelCreated { channel, .. }) => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2)", t.n("search_channels")),
                    channel.to_string(),
                    g.to_string()
                );
                c.remember(format!("guild-of:{channel}"), g.to_string());
            }
            (StreamId::Channel(ch), EventBody::MessagePosted { .. }) => {
                let Some(EventBody::MessagePosted { text, .. }) = &e.event.body else { return Ok(()) };
                let sql = format!("SELECT guild FROM {} WHERE id = $1", t.n("search_channels"));
                let Some(guild) = c.lookup(format!("guild-of:{ch}"), sql, ch.to_string().into()).await? else {
                    return Err(ApplyError::Invalid(format!("message in unknown channel {ch}")));
                };
                let id = e.event.id.to_string();
                ins!(c, t.n("search_ids"), "", &id, e.position as i64);
                match db {
                    DbKind::Sqlite => ins!(
                        c,
                        format!("{text_table} (rowid, message_id, guild, channel, body)"),
                        "",
                        e.position as i64,
                        &id,
                        guild,
                        ch.to_string(),
                        text
                    ),
                    DbKind::Postgres => ins!(
                        c,
                        format!("{text_table} (message_id, guild, channel, body)"),
                        "",
                        &id,
                        guild,
                        ch.to_string(),
                        text
                    ),
                }
            }
            (StreamId::Channel(_), EventBody::MessageEdited { message, .. }) => {
                let id = message.to_string();
                // Column of the id and the body in a held-back row (SQLite rows carry the rowid).
                let (key, body) = if db == DbKind::Sqlite { (1, 4) } else { (0, 3) };
                match &e.event.body {
                    Some(EventBody::MessageEdited { text, .. }) => {
                        if !c.update_held(&text_table, key, &id, |row| set(row, body, Val::T(Some(text.clone())))) {
                            exec!(c, format!("UPDATE {text_table} SET body = $2 WHERE {row_of}"), id, text);
                        }
                    }
                    _ => {
                        c.drop_held(&text_table, key, &id);
                        exec!(c, format!("DELETE FROM {text_table} WHERE {row_of}"), id);
                    }
                }
            }
            (StreamId::Channel(_), EventBody::MessageRedacted { message, .. }) => {
                let id = message.to_string();
                let key = if db == DbKind::Sqlite { 1 } else { 0 };
                if !c.held(&text_table, key, &id) {
                    exec!(c, format!("DELETE FROM {text_table} WHERE {row_of}"), id);
                } else {
                    c.drop_held(&text_table, key, &id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

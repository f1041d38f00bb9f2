//! `search`: message text, FTS5 on SQLite and a `tsvector` on PostgreSQL. Edited messages
//! are re-indexed; redacted and erased ones leave the index.
//!
//! The index row of a message has its position (on SQLite, the FTS row id), and `search_ids`
//! maps message ids to it, found by the compact key of the id (`db::id_key`): FTS5 cannot
//! index the id column, and scanning it on every edit would be quadratic.

use async_trait::async_trait;
use openguild_domain::{EventBody, EventId, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{guild_of, ins, note_channel};
use crate::db::{self, DbKind, Tables, Val, set};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct Search;

#[async_trait]
impl Projection for Search {
    fn name(&self) -> &'static str {
        "search"
    }

    fn version(&self) -> i64 {
        // 3: `search_ids` keyed by position and found by the id's compact key.
        // 4: no FTS5 column sizes.
        // 5: FTS5 secure-delete, so a redacted message's words leave the index's pages.
        5
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_channels", "search_ids", "search_text"]
    }

    fn schema(&self, db: DbKind, t: &Tables) -> Vec<String> {
        let channels = format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("search_channels"));
        // As `tl_messages`: appended by position, found by `mkey` then the id.
        let ids = format!(
            "CREATE TABLE {} (position {}, mkey BIGINT NOT NULL, message_id TEXT NOT NULL, UNIQUE (mkey, position))",
            t.n("search_ids"),
            db::position_key(db)
        );
        let text = match db {
            // Results are in position order, never ranked, so FTS5 keeps no column sizes (they
            // serve only bm25): one table fewer to write for every message.
            DbKind::Sqlite => format!(
                "CREATE VIRTUAL TABLE {} USING fts5(message_id UNINDEXED, guild UNINDEXED, channel UNINDEXED, \
                 body, tokenize = 'unicode61', columnsize = 0)",
                t.n("search_text")
            ),
            DbKind::Postgres => format!(
                "CREATE TABLE {} (position BIGINT NOT NULL, message_id TEXT PRIMARY KEY, guild TEXT NOT NULL, channel TEXT NOT NULL, \
                 body TEXT NOT NULL, tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
                t.n("search_text")
            ),
        };
        let mut statements = vec![channels, ids, text];
        if db == DbKind::Sqlite {
            // Without it FTS5 only marks deleted rows, and their terms stay in the index's
            // segments until a merge happens to rewrite them.
            statements.push(format!("INSERT INTO {0}({0}, rank) VALUES('secure-delete', 1)", t.n("search_text")));
        }
        statements
    }

    async fn apply(&self, c: &mut Writer<'_>, db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        let text_table = t.n("search_text");
        note_channel(c, t, "search_channels", e).await?;
        match (&e.event.core.stream, e.event.content()) {
            (StreamId::Channel(ch), EventBody::MessagePosted { .. }) => {
                let Some(EventBody::MessagePosted { text, .. }) = &e.event.body else { return Ok(()) };
                let Some(guild) = guild_of(c, t, "search_channels", ch).await? else {
                    return Err(ApplyError::Invalid(format!("message in unknown channel {ch}")));
                };
                let id = c.text(e.event.id.as_bytes(), || e.event.id.to_string());
                ins!(c, t.n("search_ids"), "", e.position as i64, db::id_key(&e.event.id), &id);
                // SQLite: the FTS row id is the position.
                let columns = match db {
                    DbKind::Sqlite => "rowid, message_id, guild, channel, body",
                    DbKind::Postgres => "position, message_id, guild, channel, body",
                };
                let channel = c.text(ch.as_bytes(), || ch.to_string());
                ins!(c, format!("{text_table} ({columns})"), "", e.position as i64, id, guild, channel, text);
            }
            (StreamId::Channel(_), EventBody::MessageEdited { message, .. }) => {
                let id = message.to_string();
                match &e.event.body {
                    Some(EventBody::MessageEdited { text, .. }) => {
                        if !c.update_held(&text_table, ID, &id, |row| set(row, BODY, Val::T(Some(text.clone())))) {
                            let (row, mut binds) = row_of(db, t, message);
                            binds.push(Val::from(text));
                            let n = binds.len();
                            c.exec(format!("UPDATE {text_table} SET body = ${n} WHERE {row}"), binds).await?;
                        }
                    }
                    _ => {
                        c.drop_held(&text_table, ID, &id);
                        let (row, binds) = row_of(db, t, message);
                        c.exec(format!("DELETE FROM {text_table} WHERE {row}"), binds).await?;
                    }
                }
            }
            (StreamId::Channel(_), EventBody::MessageRedacted { message, .. }) => {
                let id = message.to_string();
                if c.held(&text_table, ID, &id) {
                    c.drop_held(&text_table, ID, &id);
                } else {
                    let (row, binds) = row_of(db, t, message);
                    c.exec(format!("DELETE FROM {text_table} WHERE {row}"), binds).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Columns of the message id and the body in a held-back `search_text` row.
const ID: usize = 1;
const BODY: usize = 4;

/// How to find a message's `search_text` row, and the values it binds.
pub(crate) fn row_of(db: DbKind, t: &Tables, message: &EventId) -> (String, Vec<Val>) {
    match db {
        DbKind::Sqlite => (
            format!("rowid = (SELECT position FROM {} WHERE mkey = $1 AND message_id = $2)", t.n("search_ids")),
            vec![Val::from(db::id_key(message)), Val::from(message.to_string())],
        ),
        DbKind::Postgres => ("message_id = $1".to_owned(), vec![Val::from(message.to_string())]),
    }
}

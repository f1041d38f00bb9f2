//! `search`: message text, FTS5 on SQLite and a `tsvector` on PostgreSQL. Redacted and
//! erased messages leave the index.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;
use sqlx::AnyConnection;

use crate::db::{DbKind, Tables};
use crate::directory::exec;
use crate::{ApplyError, Projection};

pub struct Search;

#[async_trait]
impl Projection for Search {
    fn name(&self) -> &'static str {
        "search"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_channels", "search_text"]
    }

    fn schema(&self, db: DbKind, t: &Tables) -> Vec<String> {
        let channels = format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("search_channels"));
        let text = match db {
            DbKind::Sqlite => format!(
                "CREATE VIRTUAL TABLE {} USING fts5(message_id UNINDEXED, guild UNINDEXED, channel UNINDEXED, \
                 position UNINDEXED, body, tokenize = 'unicode61')",
                t.n("search_text")
            ),
            DbKind::Postgres => format!(
                "CREATE TABLE {} (message_id TEXT PRIMARY KEY, guild TEXT NOT NULL, channel TEXT NOT NULL, \
                 position BIGINT NOT NULL, body TEXT NOT NULL, \
                 tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
                t.n("search_text")
            ),
        };
        vec![channels, text]
    }

    async fn apply(&self, c: &mut AnyConnection, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        match (&e.event.core.stream, e.event.content()) {
            (StreamId::Guild(g), EventBody::ChannelCreated { channel, .. }) => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2)", t.n("search_channels")),
                    channel.to_string(),
                    g.to_string()
                );
            }
            (StreamId::Channel(ch), EventBody::MessagePosted { .. }) => {
                if let Some(EventBody::MessagePosted { text, .. }) = &e.event.body {
                    exec!(
                        c,
                        format!(
                            "INSERT INTO {} (message_id, guild, channel, position, body) \
                         SELECT $1, guild, $2, $3, $4 FROM {} WHERE id = $2",
                            t.n("search_text"),
                            t.n("search_channels")
                        ),
                        e.event.id.to_string(),
                        ch.to_string(),
                        e.position as i64,
                        text
                    );
                }
            }
            (StreamId::Channel(_), EventBody::MessageEdited { message, .. }) => match &e.event.body {
                Some(EventBody::MessageEdited { text, .. }) => {
                    exec!(
                        c,
                        format!("UPDATE {} SET body = $2 WHERE message_id = $1", t.n("search_text")),
                        message.to_string(),
                        text
                    );
                }
                _ => {
                    exec!(c, format!("DELETE FROM {} WHERE message_id = $1", t.n("search_text")), message.to_string());
                }
            },
            (StreamId::Channel(_), EventBody::MessageRedacted { message, .. }) => {
                exec!(c, format!("DELETE FROM {} WHERE message_id = $1", t.n("search_text")), message.to_string());
            }
            _ => {}
        }
        Ok(())
    }
}

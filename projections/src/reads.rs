//! `reads`: how far each person read each channel (`account.read` on their stream), and who
//! each message mentions, by channel and position — what unread and mention counts are
//! counted from.
//!
//! Nothing here grows with a channel's members: a post writes one row per person it names
//! (and one for `@everyone`), a read marker one row per person and channel. Counting reads
//! the channel's messages after the marker on the timeline's `(channel, position)` key,
//! bounded (`queries::read_states`), so its cost is that of the unread messages, up to the
//! bound, never that of the backlog.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, ins};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

/// The mention row of an `@everyone` (and `@here`): it counts for everyone who can see it.
pub const EVERYONE: &str = "*";

/// The mention row of a role: it counts for everyone holding the role.
pub fn role_key(role: &openguild_domain::RoleId) -> String {
    format!("&{role}")
}

pub struct Reads;

#[async_trait]
impl Projection for Reads {
    fn name(&self) -> &'static str {
        "reads"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rd_markers", "rd_mentions"]
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE {} (user_id TEXT NOT NULL, channel TEXT NOT NULL, message TEXT NOT NULL, \
                 PRIMARY KEY (user_id, channel))",
                t.n("rd_markers")
            ),
            format!(
                "CREATE TABLE {} (channel TEXT NOT NULL, position BIGINT NOT NULL, user_id TEXT NOT NULL, \
                 message TEXT NOT NULL, author TEXT NOT NULL, UNIQUE (channel, position, user_id), UNIQUE (message, user_id))",
                t.n("rd_mentions")
            ),
        ]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        match (&e.event.core.stream, e.event.content()) {
            (StreamId::User(user), EventBody::Read { channel, message }) => {
                let table = t.n("rd_markers");
                exec!(
                    c,
                    format!(
                        "INSERT INTO {table} VALUES ($1, $2, $3) ON CONFLICT (user_id, channel) \
                         DO UPDATE SET message = excluded.message"
                    ),
                    user.to_string(),
                    channel.to_string(),
                    message.to_string()
                );
            }
            (
                StreamId::Channel(channel),
                EventBody::MessagePosted { mentions, mentions_everyone, mention_roles, .. },
            ) => {
                let (channel, message) = (channel.to_string(), e.event.id.to_string());
                let author = e.event.core.sender.to_string();
                let everyone = mentions_everyone.then(|| EVERYONE.to_owned());
                let roles = mention_roles.iter().map(role_key);
                for user in mentions.iter().map(ToString::to_string).chain(everyone).chain(roles) {
                    ins!(
                        c,
                        t.n("rd_mentions"),
                        "ON CONFLICT DO NOTHING",
                        channel.as_str(),
                        e.position as i64,
                        user,
                        message.as_str(),
                        author.as_str()
                    );
                }
            }
            (StreamId::Channel(_), EventBody::MessageRedacted { message, .. }) => {
                exec!(c, format!("DELETE FROM {} WHERE message = $1", t.n("rd_mentions")), message.to_string());
            }
            _ => {}
        }
        Ok(())
    }
}

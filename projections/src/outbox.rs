//! `federation_outbox`: for each allowlisted peer, the ordered events it should receive —
//! the events of every guild with members on that peer.
//!
//! The outbox only records what is due; delivery keeps its own cursor per peer (the event
//! position), so rebuilding the outbox yields the same rows and sends nothing twice.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;
use sqlx::{AnyConnection, Row};

use crate::db::{DbKind, Tables};
use crate::directory::exec;
use crate::{ApplyError, Projection};

pub struct FederationOutbox {
    peers: Vec<String>,
}

impl FederationOutbox {
    /// `peers`: the allowlisted peer server names.
    pub fn new(peers: Vec<String>) -> Self {
        Self { peers }
    }
}

#[async_trait]
impl Projection for FederationOutbox {
    fn name(&self) -> &'static str {
        "federation_outbox"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["outbox", "outbox_servers", "outbox_channels"]
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE {} (peer TEXT NOT NULL, position BIGINT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (peer, position))",
                t.n("outbox")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, server TEXT NOT NULL, members BIGINT NOT NULL, PRIMARY KEY (guild, server))",
                t.n("outbox_servers")
            ),
            format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("outbox_channels")),
        ]
    }

    async fn apply(&self, c: &mut AnyConnection, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        use EventBody as E;
        let content = e.event.content();
        let guild = match &e.event.core.stream {
            StreamId::Guild(g) => g.to_string(),
            StreamId::Channel(ch) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT guild FROM {} WHERE id = $1",
                    t.n("outbox_channels")
                )))
                .bind(ch.to_string())
                .fetch_optional(&mut *c)
                .await?;
                match row {
                    Some(r) => r.try_get::<String, _>(0)?,
                    None => return Err(ApplyError::Invalid(format!("event in unknown channel {ch}"))),
                }
            }
            _ => return Ok(()),
        };
        if let E::ChannelCreated { channel, .. } = content {
            exec!(c, format!("INSERT INTO {} VALUES ($1, $2)", t.n("outbox_channels")), channel.to_string(), &guild);
        }
        // A peer's user joining is delivered to that peer; one leaving is delivered before
        // the count drops.
        let joined = match content {
            E::GuildCreated(created) => Some(created.creator.server().to_string()),
            E::MemberJoined { user, .. } => Some(user.server().to_string()),
            _ => None,
        };
        let left = match content {
            E::MemberLeft { user } | E::MemberKicked { user, .. } | E::MemberBanned { user, .. } => {
                Some(user.server().to_string())
            }
            _ => None,
        };
        if let Some(server) = &joined {
            exec!(
                c,
                format!(
                    "INSERT INTO {} VALUES ($1, $2, 1) ON CONFLICT (guild, server) DO UPDATE SET members = {}.members + 1",
                    t.n("outbox_servers"),
                    t.n("outbox_servers")
                ),
                &guild,
                server
            );
        }
        for peer in &self.peers {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT members FROM {} WHERE guild = $1 AND server = $2",
                t.n("outbox_servers")
            )))
            .bind(&guild)
            .bind(peer)
            .fetch_optional(&mut *c)
            .await?;
            let members: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
            if members > 0 {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3)", t.n("outbox")),
                    peer,
                    e.position as i64,
                    e.event.id.to_string()
                );
            }
        }
        if let Some(server) = &left {
            exec!(
                c,
                format!("UPDATE {} SET members = members - 1 WHERE guild = $1 AND server = $2", t.n("outbox_servers")),
                &guild,
                server
            );
        }
        Ok(())
    }
}

//! `federation_outbox`: for each allowlisted peer, the ordered events it should receive —
//! the events of every guild with members on that peer.
//!
//! The outbox only records what is due; delivery keeps its own cursor per peer (the event
//! position), so rebuilding the outbox yields the same rows and sends nothing twice.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, guild_of, ins};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
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

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        use EventBody as E;
        let content = e.event.content();
        let guild = match &e.event.core.stream {
            StreamId::Guild(g) => g.to_string(),
            StreamId::Channel(ch) => match guild_of(c, t, "outbox_channels", ch).await? {
                Some(g) => g,
                None => return Err(ApplyError::Invalid(format!("event in unknown channel {ch}"))),
            },
            _ => return Ok(()),
        };
        if let E::ChannelCreated { channel, .. } = content {
            exec!(c, format!("INSERT INTO {} VALUES ($1, $2)", t.n("outbox_channels")), channel.to_string(), &guild);
            c.remember(format!("guild-of:{channel}"), guild.clone());
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
        let servers = t.n("outbox_servers");
        if let Some(server) = &joined {
            let members = members(c, &servers, &guild, server).await? + 1;
            exec!(
                c,
                format!(
                    "INSERT INTO {servers} VALUES ($1, $2, 1) \
                     ON CONFLICT (guild, server) DO UPDATE SET members = {servers}.members + 1"
                ),
                &guild,
                server
            );
            c.remember(format!("members:{guild}:{server}"), members.to_string());
        }
        for peer in &self.peers {
            if members(c, &servers, &guild, peer).await? > 0 {
                let id = c.text(e.event.id.as_bytes(), || e.event.id.to_string());
                ins!(c, t.n("outbox"), "", peer, e.position as i64, id);
            }
        }
        if let Some(server) = &left {
            let members = members(c, &servers, &guild, server).await? - 1;
            exec!(
                c,
                format!("UPDATE {servers} SET members = members - 1 WHERE guild = $1 AND server = $2"),
                &guild,
                server
            );
            c.remember(format!("members:{guild}:{server}"), members.to_string());
        }
        Ok(())
    }
}

/// How many members of `guild` are on `server` (looked up once per batch).
async fn members(c: &mut Writer<'_>, servers: &str, guild: &str, server: &str) -> Result<i64, ApplyError> {
    let sql = || format!("SELECT CAST(members AS TEXT) FROM {servers} WHERE guild = $1 AND server = $2");
    match c.lookup(format!("members:{guild}:{server}"), sql, vec![guild.into(), server.into()]).await? {
        Some(v) => v.parse().map_err(|_| ApplyError::Invalid(format!("bad member count {v:?}"))),
        None => Ok(0),
    }
}

//! `federation_outbox`: for each other server with members in a guild, the ordered events it
//! should receive — every event of that guild from the one its first member joined by.
//!
//! Who is a peer is not the outbox's business: it records what is due to every server with
//! members here, whatever the allowlist says now, and the sender delivers only to allowed
//! peers (`api::sender`). So the rows depend on the events alone — a rebuild gives the same
//! rows under any configuration — and a peer an operator allows at run time finds its queue
//! complete, from the join of its first member on. Delivery keeps its own cursor per peer
//! (the event position), so rebuilding the outbox yields the same rows and sends nothing
//! twice.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, guild_of, ins, note_channel};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct FederationOutbox {
    /// This hub's server name: its own members are not federated with.
    us: String,
}

impl FederationOutbox {
    /// `us`: this hub's server name.
    pub fn new(us: impl Into<String>) -> Self {
        Self { us: us.into() }
    }
}

#[async_trait]
impl Projection for FederationOutbox {
    fn name(&self) -> &'static str {
        "federation_outbox"
    }

    fn version(&self) -> i64 {
        // 2: rows for every other server with members, not only configured peers.
        2
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

    async fn apply(&self, c: &mut Writer<'_>, db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
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
        note_channel(c, t, "outbox_channels", e).await?;
        // A server's user joining is delivered to that server; one leaving is delivered
        // before the count drops. This hub's own members are not counted.
        let remote = |user: &openguild_domain::UserId| Some(user.server().to_string()).filter(|s| *s != self.us);
        let joined: Vec<String> = match content {
            E::GuildCreated(created) => match &created.dm {
                Some(people) => people.iter().filter_map(remote).collect(),
                None => remote(&created.creator).into_iter().collect(),
            },
            E::MemberJoined { user, .. } => remote(user).into_iter().collect(),
            _ => Vec::new(),
        };
        let left = match content {
            E::MemberLeft { user } | E::MemberKicked { user, .. } | E::MemberBanned { user, .. } => remote(user),
            _ => None,
        };
        let servers = t.n("outbox_servers");
        let mut due = servers_of(c, db, &servers, &guild).await?;
        for server in &joined {
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
            if !due.contains(server) {
                due.push(server.clone());
                due.sort();
                c.remember(format!("servers:{guild}"), due.join(" "));
            }
        }
        for server in &due {
            let id = c.text(e.event.id.as_bytes(), || e.event.id.to_string());
            ins!(c, t.n("outbox"), "", server, e.position as i64, id);
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
            if members <= 0 {
                due.retain(|s| s != server);
                c.remember(format!("servers:{guild}"), due.join(" "));
            }
        }
        Ok(())
    }
}

/// The other servers with members in `guild`, in name order (looked up once per batch, then
/// kept up to date by the joins and leaves applied).
async fn servers_of(c: &mut Writer<'_>, db: DbKind, servers: &str, guild: &str) -> Result<Vec<String>, ApplyError> {
    let sql = || {
        let joined = match db {
            DbKind::Sqlite => "group_concat(server, ' ')",
            DbKind::Postgres => "string_agg(server, ' ')",
        };
        format!("SELECT COALESCE({joined}, '') FROM {servers} WHERE guild = $1 AND members > 0")
    };
    let found = c.lookup(format!("servers:{guild}"), sql, vec![guild.into()]).await?.unwrap_or_default();
    let mut list: Vec<String> = found.split_whitespace().map(str::to_owned).collect();
    list.sort();
    Ok(list)
}

/// How many members of `guild` are on `server` (looked up once per batch).
async fn members(c: &mut Writer<'_>, servers: &str, guild: &str, server: &str) -> Result<i64, ApplyError> {
    let sql = || format!("SELECT CAST(members AS TEXT) FROM {servers} WHERE guild = $1 AND server = $2");
    match c.lookup(format!("members:{guild}:{server}"), sql, vec![guild.into(), server.into()]).await? {
        Some(v) => v.parse().map_err(|_| ApplyError::Invalid(format!("bad member count {v:?}"))),
        None => Ok(0),
    }
}

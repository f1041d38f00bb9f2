//! `audit replay`: a guild's state and moderation history as of a moment, computed from the
//! events alone (not from any read model), with the domain's own `evolve`.

use std::collections::BTreeMap;

use openguild_domain::guild::{self, Guild};
use openguild_domain::{EventBody, GuildId, StreamId, Timestamp};
use openguild_store::{Direction, EventStore, StoreError};
use serde::Serialize;

/// Up to which moment to replay.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Events with a global position at or before this.
    Position(u64),
    /// Events with a timestamp at or before this.
    Time(Timestamp),
    /// Everything.
    Now,
}

/// The guild as it was, in a form for people and JSON.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct GuildAt {
    pub guild: String,
    pub name: String,
    pub owner: Option<String>,
    pub archived: bool,
    pub deleted: bool,
    /// The last event applied: its seq in the guild stream and global position.
    pub seq: u64,
    pub position: u64,
    pub channels: BTreeMap<String, ChannelAt>,
    pub roles: Vec<RoleAt>,
    pub members: BTreeMap<String, Vec<String>>,
    pub bans: BTreeMap<String, String>,
    /// Timeouts still running at the replayed moment: user → until (ms).
    pub timeouts: BTreeMap<String, u64>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ChannelAt {
    pub name: String,
    pub kind: String,
    pub slow_mode_seconds: u32,
    pub locked: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RoleAt {
    pub id: String,
    pub name: String,
    pub position: u32,
    pub permissions: Vec<&'static str>,
}

/// One moderation act.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub position: u64,
    pub event_id: String,
    pub ts: u64,
    pub actor: String,
    pub kind: &'static str,
    pub target: Option<String>,
    pub reason: String,
}

/// Replays a guild's stream up to `until`. `None` if the guild has no events by then.
pub async fn replay(store: &dyn EventStore, guild_id: GuildId, until: Until) -> Result<Option<GuildAt>, StoreError> {
    let stream = StreamId::Guild(guild_id);
    let mut state = Guild::default();
    let mut history = Vec::new();
    let (mut last_position, mut last_ts) = (0, Timestamp::default());
    let mut from = 1;
    'read: loop {
        let page = store.read_stream(&stream, from, 500, Direction::Forward).await?;
        let Some(last) = page.last() else { break };
        from = last.event.core.seq + 1;
        for e in page {
            let included = match until {
                Until::Position(p) => e.position <= p,
                Until::Time(t) => e.event.core.ts <= t,
                Until::Now => true,
            };
            if !included {
                break 'read;
            }
            if let Some(entry) = moderation(&e) {
                history.push(entry);
            }
            last_position = e.position;
            last_ts = e.event.core.ts;
            state = guild::evolve(state, &e.event);
        }
    }
    if state.id.is_none() {
        return Ok(None);
    }
    let at = match until {
        Until::Time(t) => t,
        _ => last_ts,
    };
    Ok(Some(GuildAt {
        guild: guild_id.to_string(),
        name: state.name.clone(),
        owner: state.owner.as_ref().map(|o| o.to_string()),
        archived: state.archived,
        deleted: state.deleted,
        seq: state.version,
        position: last_position,
        channels: state
            .channels
            .iter()
            .map(|(id, c)| {
                let kind = crate::apply::kind_name(c.kind).to_owned();
                (
                    id.to_string(),
                    ChannelAt { name: c.name.clone(), kind, slow_mode_seconds: c.slow_mode_seconds, locked: c.locked },
                )
            })
            .collect(),
        roles: state
            .roles
            .iter()
            .map(|(id, r)| RoleAt {
                id: id.to_string(),
                name: r.name.clone(),
                position: state.position(id),
                permissions: r.permissions.names(),
            })
            .collect(),
        members: state
            .members
            .iter()
            .map(|(u, m)| {
                (u.to_string(), m.roles.iter().filter_map(|r| state.roles.get(r).map(|r| r.name.clone())).collect())
            })
            .collect(),
        bans: state.bans.iter().map(|(u, b)| (u.to_string(), b.reason.clone())).collect(),
        timeouts: state
            .timeouts
            .iter()
            .filter(|(_, until)| **until > at)
            .map(|(u, until)| (u.to_string(), until.as_millis()))
            .collect(),
        history,
    }))
}

fn moderation(e: &openguild_store::StoredEvent) -> Option<HistoryEntry> {
    use EventBody as E;
    let (target, reason) = match e.event.content() {
        E::MemberKicked { user, reason }
        | E::MemberBanned { user, reason, .. }
        | E::MemberUnbanned { user, reason }
        | E::MemberTimedOut { user, reason, .. }
        | E::TimeoutRemoved { user, reason } => (Some(user.to_string()), reason.clone()),
        E::ChannelLocked { channel, reason, .. } => (Some(channel.to_string()), reason.clone()),
        E::SlowModeSet { channel, .. } => (Some(channel.to_string()), String::new()),
        E::ReportResolved { report, reason, .. } => (Some(report.to_string()), reason.clone()),
        E::GuildArchived { reason } => (None, reason.clone()),
        _ => return None,
    };
    Some(HistoryEntry {
        position: e.position,
        event_id: e.event.id.to_string(),
        ts: e.event.core.ts.as_millis(),
        actor: e.event.core.sender.to_string(),
        kind: e.event.content().kind(),
        target,
        reason,
    })
}

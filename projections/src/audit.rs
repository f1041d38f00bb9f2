//! `audit_log`: every governance and moderation event — who, what, to whom, where, why,
//! when, before → after — each entry linked to the signed event it came from, so a
//! moderator (or a court) can verify it.
//!
//! `before` needs the previous value; the projection keeps its own small table of current
//! values (`audit_values`) rather than reading another projection, so it rebuilds alone.

use async_trait::async_trait;
use openguild_domain::{EventBody, StreamId};
use openguild_store::StoredEvent;
use serde_json::{Value, json};

use crate::apply::{exec, guild_of, ins, kind_name, note_channel, place_key, target_key};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct AuditLog;

const TABLES: &[&str] = &["audit_log", "audit_values", "audit_channels"];

#[async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn version(&self) -> i64 {
        // 2: voice moderation and user limits.
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE {} (position BIGINT PRIMARY KEY, event_id TEXT NOT NULL, guild TEXT NOT NULL, kind TEXT NOT NULL, \
                 actor TEXT NOT NULL, target TEXT, channel TEXT, reason TEXT NOT NULL, ts BIGINT NOT NULL, \
                 before_value TEXT, after_value TEXT, UNIQUE (guild, position))",
                t.n("audit_log")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (guild, k))",
                t.n("audit_values")
            ),
            format!("CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL)", t.n("audit_channels")),
        ]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        use EventBody as E;
        let core = &e.event.core;
        let content = e.event.content();
        let guild = match &core.stream {
            StreamId::Guild(g) => g.to_string(),
            StreamId::Channel(ch) => {
                // Only moderation is audited from channel streams: of messages, and in voice.
                if !matches!(
                    content,
                    E::MessageRedacted { .. }
                        | E::MessagePinned { .. }
                        | E::MessageUnpinned { .. }
                        | E::VoiceServerMuted { .. }
                        | E::VoiceDisconnected { .. }
                        | E::VoiceMoved { .. }
                ) {
                    return Ok(());
                }
                match guild_of(c, t, "audit_channels", ch).await? {
                    Some(g) => g,
                    None => return Err(ApplyError::Invalid(format!("moderation in unknown channel {ch}"))),
                }
            }
            _ => return Ok(()),
        };
        note_channel(c, t, "audit_channels", e).await?;
        let entry = describe(content, &core.stream);
        let before = match &entry.key {
            Some(k) => {
                let sql = || format!("SELECT v FROM {} WHERE guild = $1 AND k = $2", t.n("audit_values"));
                c.lookup(format!("audit:{guild}:{k}"), sql, vec![(&guild).into(), k.as_str().into()]).await?
            }
            None => None,
        };
        if let (Some(k), Some(after)) = (&entry.key, &entry.after) {
            let v = after.to_string();
            exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND k = $2", t.n("audit_values")), &guild, k);
            exec!(c, format!("INSERT INTO {} VALUES ($1, $2, $3)", t.n("audit_values")), &guild, k, &v);
            c.remember(format!("audit:{guild}:{k}"), v);
        }
        ins!(
            c,
            t.n("audit_log"),
            "",
            e.position as i64,
            e.event.id.to_string(),
            &guild,
            content.kind(),
            core.sender.to_string(),
            entry.target,
            entry.channel,
            entry.reason,
            core.ts.as_millis() as i64,
            before,
            entry.after.map(|a| a.to_string())
        );
        Ok(())
    }
}

/// What an event means for the audit log.
struct Entry {
    target: Option<String>,
    channel: Option<String>,
    reason: String,
    /// The value this event changes, for before → after.
    key: Option<String>,
    after: Option<Value>,
}

fn describe(body: &EventBody, stream: &StreamId) -> Entry {
    use EventBody as E;
    let mut entry = Entry { target: None, channel: None, reason: String::new(), key: None, after: None };
    let mut set = |key: String, after: Value| {
        entry.key = Some(key);
        entry.after = Some(after);
    };
    match body {
        E::GuildCreated(c) => set("guild".into(), json!({ "name": c.name })),
        E::GuildUpdated { name, description } => {
            set("guild".into(), json!({ "name": name, "description": description }))
        }
        E::GuildArchived { .. } | E::GuildDeleted { .. } => {}
        E::CategoryCreated { category, name, position } | E::CategoryUpdated { category, name, position } => {
            set(format!("category:{category}"), json!({ "name": name, "position": position }));
        }
        E::CategoryDeleted { category } => set(format!("category:{category}"), Value::Null),
        E::ChannelCreated { channel, name, kind, category, position, topic } => set(
            format!("channel:{channel}"),
            json!({ "name": name, "kind": kind_name(*kind), "category": category.map(|c| c.to_string()), "position": position, "topic": topic }),
        ),
        E::ChannelUpdated { channel, name, topic } => {
            set(format!("channel:{channel}"), json!({ "name": name, "topic": topic }));
        }
        E::ChannelMoved { channel, category, position } => set(
            format!("channel-position:{channel}"),
            json!({ "category": category.map(|c| c.to_string()), "position": position }),
        ),
        E::ChannelDeleted { channel } => set(format!("channel:{channel}"), Value::Null),
        E::SlowModeSet { channel, seconds } => set(format!("slow-mode:{channel}"), json!(seconds)),
        E::ChannelLocked { channel, locked, .. } => set(format!("locked:{channel}"), json!(locked)),
        E::OverwriteSet { place, target, allow, deny } => set(
            format!("overwrite:{}:{}", place_key(place), target_key(target)),
            json!({ "allow": allow.names(), "deny": deny.names() }),
        ),
        E::RoleCreated { role, name, permissions, .. } | E::RoleUpdated { role, name, permissions } => {
            set(format!("role:{role}"), json!({ "name": name, "permissions": permissions.names() }));
        }
        E::RolesReordered { order } => {
            set("role-order".into(), json!(order.iter().map(|r| r.to_string()).collect::<Vec<_>>()));
        }
        E::RoleDeleted { role } => set(format!("role:{role}"), Value::Null),
        E::InviteCreated { code, max_uses, expires_at } => set(
            format!("invite:{code}"),
            json!({ "maxUses": max_uses, "expiresAt": expires_at.map(|t| t.as_millis()) }),
        ),
        E::InviteRevoked { code } => set(format!("invite:{code}"), Value::Null),
        E::NicknameSet { user, nickname } => set(format!("nickname:{user}"), json!(nickname)),
        E::MemberTimedOut { user, until, .. } => set(format!("timeout:{user}"), json!(until.as_millis())),
        E::TimeoutRemoved { user, .. } => set(format!("timeout:{user}"), Value::Null),
        E::MemberBanned { user, purge_since, .. } => {
            set(format!("ban:{user}"), json!({ "purgeSince": purge_since.map(|t| t.as_millis()) }));
        }
        E::MemberUnbanned { user, .. } => set(format!("ban:{user}"), Value::Null),
        E::RoleAssigned { user, role, .. } => set(format!("member-role:{user}:{role}"), json!(true)),
        E::RoleUnassigned { user, role, .. } => set(format!("member-role:{user}:{role}"), json!(false)),
        _ => {}
    }
    let (target, channel, reason): (Option<String>, Option<String>, &str) = match body {
        E::RoleAssigned { user, reason, .. } | E::RoleUnassigned { user, reason, .. } => {
            (Some(user.to_string()), None, reason)
        }
        E::MemberJoined { user, .. } | E::MemberLeft { user } | E::NicknameSet { user, .. } => {
            (Some(user.to_string()), None, "")
        }
        E::MemberKicked { user, reason }
        | E::MemberBanned { user, reason, .. }
        | E::MemberUnbanned { user, reason }
        | E::MemberTimedOut { user, reason, .. }
        | E::TimeoutRemoved { user, reason } => (Some(user.to_string()), None, reason),
        E::ChannelCreated { channel, .. }
        | E::ChannelUpdated { channel, .. }
        | E::ChannelMoved { channel, .. }
        | E::ChannelDeleted { channel }
        | E::SlowModeSet { channel, .. }
        | E::UserLimitSet { channel, .. } => (None, Some(channel.to_string()), ""),
        E::ChannelLocked { channel, reason, .. } | E::ChannelArchived { channel, reason } => {
            (None, Some(channel.to_string()), reason)
        }
        E::RoleCreated { role, .. } | E::RoleUpdated { role, .. } | E::RoleDeleted { role } => {
            (Some(format!("role:{role}")), None, "")
        }
        E::OverwriteSet { target, .. } => (Some(target_key(target)), None, ""),
        E::ReportFiled { report, reason, .. } | E::ReportResolved { report, reason, .. } => {
            (Some(format!("report:{report}")), None, reason)
        }
        E::ReportAssigned { report, .. } => (Some(format!("report:{report}")), None, ""),
        E::MessageRedacted { message, reason } => (Some(message.to_string()), channel_of(stream), reason),
        E::MessagePinned { message } | E::MessageUnpinned { message } => {
            (Some(message.to_string()), channel_of(stream), "")
        }
        E::GuildArchived { reason } | E::GuildDeleted { reason } => (None, None, reason),
        E::VoiceServerMuted { user, reason, .. }
        | E::VoiceDisconnected { user, reason }
        | E::VoiceMoved { user, reason, .. } => (Some(user.to_string()), channel_of(stream), reason),
        _ => (None, None, ""),
    };
    entry.target = target;
    entry.channel = channel;
    entry.reason = reason.to_owned();
    entry
}

fn channel_of(stream: &StreamId) -> Option<String> {
    match stream {
        StreamId::Channel(c) => Some(c.to_string()),
        _ => None,
    }
}

//! `directory`: guilds, categories, channels, roles, permission overwrites, members with
//! their roles, bans, timeouts and invites — what the API lists and checks.

use async_trait::async_trait;
use openguild_domain::body::Place;
use openguild_domain::permissions::OverwriteTarget;
use openguild_domain::{ChannelId, ChannelKind, EventBody, RoleId, StreamId};
use openguild_store::StoredEvent;

use crate::apply::{exec, kind_name, place_key, target_key};
use crate::db::{DbKind, Tables};
use crate::writer::Writer;
use crate::{ApplyError, Projection};

pub struct Directory;

const TABLES: &[&str] = &[
    "dir_guilds",
    "dir_categories",
    "dir_channels",
    "dir_roles",
    "dir_overwrites",
    "dir_members",
    "dir_member_roles",
    "dir_bans",
    "dir_timeouts",
    "dir_invites",
];

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn schema(&self, _db: DbKind, t: &Tables) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT, owner TEXT NOT NULL, \
                 origin TEXT NOT NULL, created_at BIGINT NOT NULL, archived BIGINT NOT NULL, deleted BIGINT NOT NULL)",
                t.n("dir_guilds")
            ),
            format!(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL, name TEXT NOT NULL, position BIGINT NOT NULL)",
                t.n("dir_categories")
            ),
            format!(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, guild TEXT NOT NULL, category TEXT, name TEXT NOT NULL, \
                 kind TEXT NOT NULL, position BIGINT NOT NULL, topic TEXT NOT NULL, slow_mode BIGINT NOT NULL, \
                 locked BIGINT NOT NULL)",
                t.n("dir_channels")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, permissions BIGINT NOT NULL, \
                 position BIGINT NOT NULL, PRIMARY KEY (guild, id))",
                t.n("dir_roles")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, place TEXT NOT NULL, target TEXT NOT NULL, allow BIGINT NOT NULL, \
                 deny BIGINT NOT NULL, PRIMARY KEY (place, target))",
                t.n("dir_overwrites")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, user_id TEXT NOT NULL, nickname TEXT, joined_at BIGINT NOT NULL, \
                 PRIMARY KEY (guild, user_id))",
                t.n("dir_members")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, \
                 PRIMARY KEY (guild, user_id, role))",
                t.n("dir_member_roles")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, user_id TEXT NOT NULL, reason TEXT NOT NULL, by_user TEXT NOT NULL, \
                 at BIGINT NOT NULL, PRIMARY KEY (guild, user_id))",
                t.n("dir_bans")
            ),
            format!(
                "CREATE TABLE {} (guild TEXT NOT NULL, user_id TEXT NOT NULL, until BIGINT NOT NULL, \
                 PRIMARY KEY (guild, user_id))",
                t.n("dir_timeouts")
            ),
            format!(
                "CREATE TABLE {} (code TEXT NOT NULL, guild TEXT NOT NULL, creator TEXT NOT NULL, max_uses BIGINT, \
                 uses BIGINT NOT NULL, expires_at BIGINT, PRIMARY KEY (guild, code))",
                t.n("dir_invites")
            ),
        ]
    }

    async fn apply(&self, c: &mut Writer<'_>, _db: DbKind, t: &Tables, e: &StoredEvent) -> Result<(), ApplyError> {
        let StreamId::Guild(guild_id) = &e.event.core.stream else { return Ok(()) };
        let g = guild_id.to_string();
        let ts = e.event.core.ts.as_millis() as i64;
        let sender = e.event.core.sender.to_string();
        use EventBody as E;
        match e.event.content() {
            E::GuildCreated(created) => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, NULL, $3, $4, $5, 0, 0)", t.n("dir_guilds")),
                    &g,
                    &created.name,
                    created.creator.to_string(),
                    created.origin.to_string(),
                    created.created_at.as_millis() as i64
                );
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, '@everyone', $3, 0)", t.n("dir_roles")),
                    &g,
                    RoleId::EVERYONE.to_string(),
                    match created.dm {
                        Some(_) => openguild_domain::Permissions::DM_MEMBER.bits() as i64,
                        None => openguild_domain::Permissions::DEFAULT_EVERYONE.bits() as i64,
                    }
                );
                let one = std::slice::from_ref(&created.creator);
                let people: Vec<&openguild_domain::UserId> = match &created.dm {
                    Some(people) => people.iter().collect(),
                    None => one.iter().collect(),
                };
                for user in people {
                    exec!(
                        c,
                        format!("INSERT INTO {} VALUES ($1, $2, NULL, $3)", t.n("dir_members")),
                        &g,
                        user.to_string(),
                        ts
                    );
                }
                if let Some(people) = &created.dm {
                    // A DM's one channel, named by the DM's bytes.
                    let kind = if people.len() > 2 { ChannelKind::GroupDm } else { ChannelKind::Dm };
                    exec!(
                        c,
                        format!("INSERT INTO {} VALUES ($1, $2, NULL, '', $3, 0, '', 0, 0)", t.n("dir_channels")),
                        ChannelId::from_bytes(*guild_id.as_bytes()).to_string(),
                        &g,
                        kind_name(kind)
                    );
                }
            }
            E::GuildUpdated { name, description } => {
                if let Some(name) = name {
                    exec!(c, format!("UPDATE {} SET name = $2 WHERE id = $1", t.n("dir_guilds")), &g, name);
                }
                if let Some(d) = description {
                    exec!(c, format!("UPDATE {} SET description = $2 WHERE id = $1", t.n("dir_guilds")), &g, d);
                }
            }
            E::GuildArchived { .. } => {
                exec!(c, format!("UPDATE {} SET archived = 1 WHERE id = $1", t.n("dir_guilds")), &g);
            }
            E::GuildDeleted { .. } => {
                exec!(c, format!("UPDATE {} SET deleted = 1 WHERE id = $1", t.n("dir_guilds")), &g);
            }
            E::CategoryCreated { category, name, position } => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3, $4)", t.n("dir_categories")),
                    category.to_string(),
                    &g,
                    name,
                    i64::from(*position)
                );
            }
            E::CategoryUpdated { category, name, position } => {
                exec!(
                    c,
                    format!("UPDATE {} SET name = $2, position = $3 WHERE id = $1", t.n("dir_categories")),
                    category.to_string(),
                    name,
                    i64::from(*position)
                );
            }
            E::CategoryDeleted { category } => {
                let id = category.to_string();
                exec!(c, format!("DELETE FROM {} WHERE id = $1", t.n("dir_categories")), &id);
                exec!(c, format!("UPDATE {} SET category = NULL WHERE category = $1", t.n("dir_channels")), &id);
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE place = $1", t.n("dir_overwrites")),
                    place_key(&Place::Category(*category))
                );
            }
            E::ChannelCreated { channel, name, kind, category, position, topic } => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0)", t.n("dir_channels")),
                    channel.to_string(),
                    &g,
                    category.map(|c| c.to_string()),
                    name,
                    kind_name(*kind),
                    i64::from(*position),
                    topic
                );
            }
            E::ChannelUpdated { channel, name, topic } => {
                exec!(
                    c,
                    format!("UPDATE {} SET name = $2, topic = $3 WHERE id = $1", t.n("dir_channels")),
                    channel.to_string(),
                    name,
                    topic
                );
            }
            E::ChannelMoved { channel, category, position } => {
                exec!(
                    c,
                    format!("UPDATE {} SET category = $2, position = $3 WHERE id = $1", t.n("dir_channels")),
                    channel.to_string(),
                    category.map(|c| c.to_string()),
                    i64::from(*position)
                );
            }
            E::ChannelDeleted { channel } => {
                exec!(c, format!("DELETE FROM {} WHERE id = $1", t.n("dir_channels")), channel.to_string());
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE place = $1", t.n("dir_overwrites")),
                    place_key(&Place::Channel(*channel))
                );
            }
            E::SlowModeSet { channel, seconds } => {
                exec!(
                    c,
                    format!("UPDATE {} SET slow_mode = $2 WHERE id = $1", t.n("dir_channels")),
                    channel.to_string(),
                    i64::from(*seconds)
                );
            }
            E::ChannelLocked { channel, locked, .. } => {
                exec!(
                    c,
                    format!("UPDATE {} SET locked = $2 WHERE id = $1", t.n("dir_channels")),
                    channel.to_string(),
                    i64::from(*locked)
                );
            }
            E::OverwriteSet { place, target, allow, deny } => {
                let (place, target) = (place_key(place), target_key(target));
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE place = $1 AND target = $2", t.n("dir_overwrites")),
                    &place,
                    &target
                );
                if !(allow.is_empty() && deny.is_empty()) {
                    exec!(
                        c,
                        format!("INSERT INTO {} VALUES ($1, $2, $3, $4, $5)", t.n("dir_overwrites")),
                        &g,
                        &place,
                        &target,
                        allow.bits() as i64,
                        deny.bits() as i64
                    );
                }
            }
            E::RoleCreated { role, name, permissions, position } => {
                let position = i64::from((*position).max(1));
                exec!(
                    c,
                    format!(
                        "UPDATE {} SET position = position + 1 WHERE guild = $1 AND position >= $2",
                        t.n("dir_roles")
                    ),
                    &g,
                    position
                );
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3, $4, $5)", t.n("dir_roles")),
                    &g,
                    role.to_string(),
                    name,
                    permissions.bits() as i64,
                    position
                );
            }
            E::RoleUpdated { role, name, permissions } => {
                exec!(
                    c,
                    format!("UPDATE {} SET name = $3, permissions = $4 WHERE guild = $1 AND id = $2", t.n("dir_roles")),
                    &g,
                    role.to_string(),
                    name,
                    permissions.bits() as i64
                );
            }
            E::RolesReordered { order } => {
                for (i, role) in order.iter().enumerate() {
                    exec!(
                        c,
                        format!("UPDATE {} SET position = $3 WHERE guild = $1 AND id = $2", t.n("dir_roles")),
                        &g,
                        role.to_string(),
                        i as i64 + 1
                    );
                }
            }
            E::RoleDeleted { role } => {
                let id = role.to_string();
                exec!(
                    c,
                    format!(
                        "UPDATE {0} SET position = position - 1 WHERE guild = $1 AND position > (SELECT position FROM {0} WHERE guild = $1 AND id = $2)",
                        t.n("dir_roles")
                    ),
                    &g,
                    &id
                );
                exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND id = $2", t.n("dir_roles")), &g, &id);
                exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND role = $2", t.n("dir_member_roles")), &g, &id);
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE guild = $1 AND target = $2", t.n("dir_overwrites")),
                    &g,
                    target_key(&OverwriteTarget::Role(*role))
                );
            }
            E::RoleAssigned { user, role, .. } => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", t.n("dir_member_roles")),
                    &g,
                    user.to_string(),
                    role.to_string()
                );
            }
            E::RoleUnassigned { user, role, .. } => {
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2 AND role = $3", t.n("dir_member_roles")),
                    &g,
                    user.to_string(),
                    role.to_string()
                );
            }
            E::InviteCreated { code, max_uses, expires_at } => {
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3, $4, 0, $5)", t.n("dir_invites")),
                    code.to_string(),
                    &g,
                    &sender,
                    max_uses.map(i64::from),
                    expires_at.map(|t| t.as_millis() as i64)
                );
            }
            E::InviteRevoked { code } => {
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE guild = $1 AND code = $2", t.n("dir_invites")),
                    &g,
                    code.to_string()
                );
            }
            E::MemberJoined { user, invite } => {
                if let Some(code) = invite {
                    exec!(
                        c,
                        format!("UPDATE {} SET uses = uses + 1 WHERE guild = $1 AND code = $2", t.n("dir_invites")),
                        &g,
                        code.to_string()
                    );
                }
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, NULL, $3)", t.n("dir_members")),
                    &g,
                    user.to_string(),
                    ts
                );
            }
            E::MemberLeft { user } | E::MemberKicked { user, .. } => remove_member(c, t, &g, &user.to_string()).await?,
            E::MemberBanned { user, reason, .. } => {
                let u = user.to_string();
                remove_member(c, t, &g, &u).await?;
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3, $4, $5)", t.n("dir_bans")),
                    &g,
                    &u,
                    reason,
                    &sender,
                    ts
                );
            }
            E::MemberUnbanned { user, .. } => {
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2", t.n("dir_bans")),
                    &g,
                    user.to_string()
                );
            }
            E::MemberTimedOut { user, until, .. } => {
                let u = user.to_string();
                exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2", t.n("dir_timeouts")), &g, &u);
                exec!(
                    c,
                    format!("INSERT INTO {} VALUES ($1, $2, $3)", t.n("dir_timeouts")),
                    &g,
                    &u,
                    until.as_millis() as i64
                );
            }
            E::TimeoutRemoved { user, .. } => {
                exec!(
                    c,
                    format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2", t.n("dir_timeouts")),
                    &g,
                    user.to_string()
                );
            }
            E::NicknameSet { user, nickname } => {
                exec!(
                    c,
                    format!("UPDATE {} SET nickname = $3 WHERE guild = $1 AND user_id = $2", t.n("dir_members")),
                    &g,
                    user.to_string(),
                    nickname.clone()
                );
            }
            _ => {}
        }
        Ok(())
    }
}

async fn remove_member(c: &mut Writer<'_>, t: &Tables, g: &str, user: &str) -> Result<(), ApplyError> {
    exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2", t.n("dir_members")), g, user);
    exec!(c, format!("DELETE FROM {} WHERE guild = $1 AND user_id = $2", t.n("dir_member_roles")), g, user);
    Ok(())
}

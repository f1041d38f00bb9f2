//! The guild aggregate: its state, its commands, `decide` and `evolve`.
//!
//! A guild's stream holds its governance: channels, categories, roles, overwrites,
//! membership, moderation and reports. A decision needs the whole guild, which is small, so
//! the guild is held in memory and rebuilt by folding its stream with [`evolve`].

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{ChannelKind, EventBody, GuildCreated, Place, ReportAction, ReportTarget};
use crate::error::{DomainError, Refusal};
use crate::event::{Event, guild_id_for};
use crate::ids::{
    CategoryId, ChannelId, EventId, GuildId, InviteCode, ReportId, RoleId, ServerName, Timestamp, UserId,
};
use crate::permissions::{self, Overwrite, OverwriteTarget, Overwrites, PermissionInput, Permissions, Scope, Verdict};
use crate::validate;

/// The longest timeout, as on Discord.
pub const MAX_TIMEOUT_MS: u64 = 28 * 24 * 3600 * 1000;
/// The longest window of messages a ban may purge.
pub const MAX_PURGE_SECONDS: u32 = 7 * 24 * 3600;
/// The longest slow mode.
pub const MAX_SLOW_MODE_SECONDS: u32 = 6 * 3600;

/// A guild as its events made it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Guild {
    pub id: Option<GuildId>,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<UserId>,
    pub origin: Option<ServerName>,
    pub created_at: Timestamp,
    pub archived: bool,
    pub deleted: bool,
    /// The seq of the last event applied (0 before the first).
    pub version: u64,
    /// The id of the last event applied.
    pub head: Option<EventId>,
    pub categories: BTreeMap<CategoryId, Category>,
    pub channels: BTreeMap<ChannelId, Channel>,
    pub roles: BTreeMap<RoleId, Role>,
    /// Every role but `@everyone`, lowest first: a role's position is its index + 1.
    pub role_order: Vec<RoleId>,
    pub members: BTreeMap<UserId, Member>,
    pub bans: BTreeMap<UserId, Ban>,
    /// Timeouts by user. Kept apart from `members` so a timeout outlives leave + rejoin.
    pub timeouts: BTreeMap<UserId, Timestamp>,
    pub invites: BTreeMap<InviteCode, Invite>,
    pub reports: BTreeMap<ReportId, Report>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Category {
    pub name: String,
    pub position: u32,
    pub overwrites: Overwrites,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub category: Option<CategoryId>,
    pub position: u32,
    pub topic: String,
    pub overwrites: Overwrites,
    pub slow_mode_seconds: u32,
    pub locked: bool,
    /// Read-only for everyone, for good.
    pub archived: bool,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Role {
    pub name: String,
    pub permissions: Permissions,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member {
    pub roles: BTreeSet<RoleId>,
    pub nickname: Option<String>,
    pub joined_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ban {
    pub by: UserId,
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Invite {
    pub creator: UserId,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Report {
    pub reporter: UserId,
    pub target: ReportTarget,
    pub reason: String,
    pub filed_at: Timestamp,
    pub resolution: Option<(ReportAction, UserId)>,
    pub assignee: Option<UserId>,
}

/// A command on a guild's stream, by `actor`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GuildCommand {
    UpdateGuild {
        name: Option<String>,
        description: Option<String>,
    },
    ArchiveGuild {
        reason: String,
    },
    DeleteGuild {
        reason: String,
    },
    CreateCategory {
        category: CategoryId,
        name: String,
    },
    UpdateCategory {
        category: CategoryId,
        name: Option<String>,
        position: Option<u32>,
    },
    DeleteCategory {
        category: CategoryId,
    },
    CreateChannel {
        channel: ChannelId,
        name: String,
        kind: ChannelKind,
        category: Option<CategoryId>,
        topic: String,
    },
    UpdateChannel {
        channel: ChannelId,
        name: Option<String>,
        topic: Option<String>,
    },
    /// Moves a channel into `category` (none: uncategorised) at `position`; without a
    /// position, after the last channel already there.
    MoveChannel {
        channel: ChannelId,
        category: Option<CategoryId>,
        position: Option<u32>,
    },
    DeleteChannel {
        channel: ChannelId,
    },
    SetSlowMode {
        channel: ChannelId,
        seconds: u32,
    },
    /// Makes a channel read-only for good (its text is erased after the hub's retention).
    ArchiveChannel {
        channel: ChannelId,
        reason: String,
    },
    LockChannel {
        channel: ChannelId,
        locked: bool,
        reason: String,
    },
    SetOverwrite {
        place: Place,
        target: OverwriteTarget,
        allow: Permissions,
        deny: Permissions,
    },
    CreateRole {
        role: RoleId,
        name: String,
        permissions: Permissions,
    },
    UpdateRole {
        role: RoleId,
        name: Option<String>,
        permissions: Option<Permissions>,
    },
    /// The new order of every role but `@everyone`, lowest first.
    ReorderRoles {
        order: Vec<RoleId>,
    },
    DeleteRole {
        role: RoleId,
    },
    AssignRole {
        user: UserId,
        role: RoleId,
        reason: String,
    },
    UnassignRole {
        user: UserId,
        role: RoleId,
        reason: String,
    },
    CreateInvite {
        code: InviteCode,
        max_uses: Option<u32>,
        expires_at: Option<Timestamp>,
    },
    RevokeInvite {
        code: InviteCode,
    },
    Join {
        invite: InviteCode,
    },
    Leave,
    /// Adds a member directly (a guild admin's act): bots made for the guild, and users a
    /// host application provisions. Bots never use invites.
    AddMember {
        user: UserId,
    },
    Kick {
        user: UserId,
        reason: String,
    },
    Ban {
        user: UserId,
        reason: String,
        purge_seconds: u32,
    },
    Unban {
        user: UserId,
        reason: String,
    },
    Timeout {
        user: UserId,
        until: Timestamp,
        reason: String,
    },
    RemoveTimeout {
        user: UserId,
        reason: String,
    },
    SetNickname {
        user: UserId,
        nickname: Option<String>,
    },
    FileReport {
        report: ReportId,
        target: ReportTarget,
        reason: String,
    },
    /// Takes a report (or, with `None`, hands it back to the queue); the assignee must be a
    /// member who may moderate.
    AssignReport {
        report: ReportId,
        assignee: Option<UserId>,
    },
    ResolveReport {
        report: ReportId,
        action: ReportAction,
        reason: String,
    },
}

/// The body of a new guild's first event and the id it names. The caller supplies a fresh
/// random nonce, so two guilds created at the same millisecond still differ.
pub fn create(
    creator: &UserId,
    origin: &ServerName,
    name: &str,
    nonce: [u8; 16],
    now: Timestamp,
) -> Result<(GuildId, EventBody), DomainError> {
    let created = GuildCreated {
        creator: creator.clone(),
        origin: origin.clone(),
        created_at: now,
        nonce,
        name: validate::name("name", name)?,
    };
    let id = guild_id_for(&created).map_err(|e| DomainError::invalid("name", e.to_string()))?;
    Ok((id, EventBody::GuildCreated(created)))
}

/// Decides what a command on an existing guild does.
pub fn decide(
    guild: &Guild,
    actor: &UserId,
    cmd: &GuildCommand,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    use GuildCommand as C;
    guild.exists()?;
    if let C::Join { invite } = cmd {
        return guild.decide_join(actor, invite, now);
    }
    if !guild.members.contains_key(actor) {
        return Err(DomainError::Forbidden(if guild.bans.contains_key(actor) {
            Refusal::Banned
        } else {
            Refusal::NotMember
        }));
    }
    if guild.archived && !matches!(cmd, C::DeleteGuild { .. }) {
        return Err(DomainError::Forbidden(Refusal::Archived));
    }
    let ctx = Ctx { guild, actor, now, perms: guild.guild_permissions(actor, now) };
    let body = match cmd {
        C::UpdateGuild { name, description } => {
            ctx.require(Permissions::MANAGE_GUILD)?;
            EventBody::GuildUpdated {
                name: name.as_deref().map(|n| validate::name("name", n)).transpose()?,
                description: description.as_deref().map(|d| validate::text("description", d, 1024)).transpose()?,
            }
        }
        C::AddMember { user } => {
            ctx.require(Permissions::MANAGE_GUILD)?;
            if guild.bans.contains_key(user) {
                return Err(DomainError::Forbidden(Refusal::Banned));
            }
            if guild.members.contains_key(user) {
                return Err(DomainError::conflict(format!("{user} is already a member")));
            }
            EventBody::MemberJoined { user: user.clone(), invite: None }
        }
        C::ArchiveGuild { reason } => {
            ctx.owner_only()?;
            EventBody::GuildArchived { reason: validate::reason(reason)? }
        }
        C::DeleteGuild { reason } => {
            ctx.owner_only()?;
            EventBody::GuildDeleted { reason: validate::reason(reason)? }
        }
        C::CreateCategory { category, name } => {
            ctx.require(Permissions::MANAGE_CHANNELS)?;
            if guild.categories.contains_key(category) {
                return Err(DomainError::conflict(format!("category {category} already exists")));
            }
            let position = guild.categories.values().map(|c| c.position + 1).max().unwrap_or(0);
            EventBody::CategoryCreated { category: *category, name: validate::name("name", name)?, position }
        }
        C::UpdateCategory { category, name, position } => {
            ctx.require(Permissions::MANAGE_CHANNELS)?;
            let current = guild.category(category)?;
            EventBody::CategoryUpdated {
                category: *category,
                name: match name {
                    Some(n) => validate::name("name", n)?,
                    None => current.name.clone(),
                },
                position: position.unwrap_or(current.position),
            }
        }
        C::DeleteCategory { category } => {
            ctx.require(Permissions::MANAGE_CHANNELS)?;
            guild.category(category)?;
            EventBody::CategoryDeleted { category: *category }
        }
        C::CreateChannel { channel, name, kind, category, topic } => {
            if guild.channels.contains_key(channel) {
                return Err(DomainError::conflict(format!("channel {channel} already exists")));
            }
            match category {
                Some(cat) => {
                    guild.category(cat)?;
                    ctx.require_in(Place::Category(*cat), Permissions::MANAGE_CHANNELS)?;
                }
                None => ctx.require(Permissions::MANAGE_CHANNELS)?,
            }
            let position =
                guild.channels.values().filter(|c| c.category == *category).map(|c| c.position + 1).max().unwrap_or(0);
            EventBody::ChannelCreated {
                channel: *channel,
                name: validate::channel_name(name)?,
                kind: *kind,
                category: *category,
                position,
                topic: validate::text_or_empty("topic", topic, 1024)?,
            }
        }
        C::UpdateChannel { channel, name, topic } => {
            let current = guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            EventBody::ChannelUpdated {
                channel: *channel,
                name: match name {
                    Some(n) => validate::channel_name(n)?,
                    None => current.name.clone(),
                },
                topic: match topic {
                    Some(t) => validate::text_or_empty("topic", t, 1024)?,
                    None => current.topic.clone(),
                },
            }
        }
        C::MoveChannel { channel, category, position } => {
            guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            if let Some(cat) = category {
                guild.category(cat)?;
                ctx.require_in(Place::Category(*cat), Permissions::MANAGE_CHANNELS)?;
            }
            let position = match position {
                Some(p) => *p,
                None => guild
                    .channels
                    .iter()
                    .filter(|(id, c)| *id != channel && c.category == *category)
                    .map(|(_, c)| c.position.saturating_add(1))
                    .max()
                    .unwrap_or(0),
            };
            EventBody::ChannelMoved { channel: *channel, category: *category, position }
        }
        C::DeleteChannel { channel } => {
            guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            EventBody::ChannelDeleted { channel: *channel }
        }
        C::SetSlowMode { channel, seconds } => {
            guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            if *seconds > MAX_SLOW_MODE_SECONDS {
                return Err(DomainError::invalid(
                    "seconds",
                    format!("slow mode is at most {MAX_SLOW_MODE_SECONDS} seconds"),
                ));
            }
            EventBody::SlowModeSet { channel: *channel, seconds: *seconds }
        }
        C::ArchiveChannel { channel, reason } => {
            let current = guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            if current.archived {
                return Err(DomainError::conflict("the channel is already archived"));
            }
            EventBody::ChannelArchived { channel: *channel, reason: validate::reason(reason)? }
        }
        C::LockChannel { channel, locked, reason } => {
            let current = guild.channel(channel)?;
            ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
            if current.locked == *locked {
                return Err(DomainError::conflict(if *locked {
                    "the channel is already locked"
                } else {
                    "the channel is not locked"
                }));
            }
            EventBody::ChannelLocked { channel: *channel, locked: *locked, reason: validate::reason(reason)? }
        }
        C::SetOverwrite { place, target, allow, deny } => {
            match place {
                Place::Channel(c) => drop(guild.channel(c)?),
                Place::Category(c) => drop(guild.category(c)?),
            }
            if let OverwriteTarget::Role(role) = target {
                guild.role(role)?;
            }
            let held = ctx.require_in(*place, Permissions::MANAGE_ROLES)?;
            if !ctx.is_admin() {
                let beyond = (*allow | *deny) - held;
                if !beyond.is_empty() {
                    return Err(DomainError::Forbidden(Refusal::CannotGrant(beyond)));
                }
            }
            if !(*allow & *deny).is_empty() {
                return Err(DomainError::invalid("deny", "a permission cannot be both allowed and denied"));
            }
            EventBody::OverwriteSet { place: *place, target: target.clone(), allow: *allow, deny: *deny }
        }
        C::CreateRole { role, name, permissions } => {
            ctx.require(Permissions::MANAGE_ROLES)?;
            if guild.roles.contains_key(role) || *role == RoleId::EVERYONE {
                return Err(DomainError::conflict(format!("role {role} already exists")));
            }
            ctx.can_grant(*permissions)?;
            EventBody::RoleCreated {
                role: *role,
                name: validate::name("name", name)?,
                permissions: *permissions,
                position: 1,
            }
        }
        C::UpdateRole { role, name, permissions } => {
            ctx.require(Permissions::MANAGE_ROLES)?;
            let current = guild.role(role)?;
            ctx.above_role(role)?;
            if let Some(p) = permissions {
                // Only what changes must be held: keeping a bit you lack is no grant.
                ctx.can_grant(*p ^ current.permissions)?;
            }
            EventBody::RoleUpdated {
                role: *role,
                name: match name {
                    Some(n) if *role != RoleId::EVERYONE => validate::name("name", n)?,
                    Some(_) => return Err(DomainError::invalid("name", "@everyone cannot be renamed")),
                    None => current.name.clone(),
                },
                permissions: permissions.unwrap_or(current.permissions),
            }
        }
        C::ReorderRoles { order } => {
            ctx.require(Permissions::MANAGE_ROLES)?;
            let now_set: BTreeSet<_> = guild.role_order.iter().collect();
            let new_set: BTreeSet<_> = order.iter().collect();
            if new_set != now_set || order.len() != guild.role_order.len() {
                return Err(DomainError::invalid("order", "must list every role except @everyone exactly once"));
            }
            if !ctx.is_owner() {
                let top = guild.top_position(actor);
                for (i, role) in order.iter().enumerate() {
                    let (old, new) = (guild.position(role), i as u32 + 1);
                    if old != new && (old >= top || new >= top) {
                        return Err(DomainError::Forbidden(Refusal::RoleNotBelow));
                    }
                }
            }
            EventBody::RolesReordered { order: order.clone() }
        }
        C::DeleteRole { role } => {
            ctx.require(Permissions::MANAGE_ROLES)?;
            if *role == RoleId::EVERYONE {
                return Err(DomainError::invalid("role", "@everyone cannot be deleted"));
            }
            guild.role(role)?;
            ctx.above_role(role)?;
            EventBody::RoleDeleted { role: *role }
        }
        C::AssignRole { user, role, reason } | C::UnassignRole { user, role, reason } => {
            let assign = matches!(cmd, C::AssignRole { .. });
            ctx.require(Permissions::MANAGE_ROLES)?;
            if *role == RoleId::EVERYONE {
                return Err(DomainError::invalid("role", "every member has @everyone"));
            }
            let granted = guild.role(role)?.permissions;
            let member = guild.member(user)?;
            ctx.above_role(role)?;
            if assign {
                ctx.can_grant(granted)?;
            }
            match (assign, member.roles.contains(role)) {
                (true, true) => return Err(DomainError::conflict(format!("{user} already has that role"))),
                (false, false) => return Err(DomainError::conflict(format!("{user} does not have that role"))),
                _ => {}
            }
            let reason = validate::reason(reason)?;
            if assign {
                EventBody::RoleAssigned { user: user.clone(), role: *role, reason }
            } else {
                EventBody::RoleUnassigned { user: user.clone(), role: *role, reason }
            }
        }
        C::CreateInvite { code, max_uses, expires_at } => {
            ctx.require(Permissions::CREATE_INVITE)?;
            if guild.invites.contains_key(code) {
                return Err(DomainError::conflict(format!("invite {code} already exists")));
            }
            if *max_uses == Some(0) {
                return Err(DomainError::invalid("maxUses", "must be at least 1, or unset for unlimited"));
            }
            if expires_at.is_some_and(|t| t <= now) {
                return Err(DomainError::invalid("expiresAt", "must be in the future"));
            }
            EventBody::InviteCreated { code: code.clone(), max_uses: *max_uses, expires_at: *expires_at }
        }
        C::RevokeInvite { code } => {
            let invite = guild.invites.get(code).ok_or_else(|| DomainError::not_found("invite", code))?;
            if invite.creator != *actor {
                ctx.require(Permissions::MANAGE_GUILD)?;
            }
            EventBody::InviteRevoked { code: code.clone() }
        }
        C::Join { .. } => return Err(DomainError::conflict("you are already a member")),
        C::Leave => {
            if ctx.is_owner() {
                return Err(DomainError::conflict("the owner cannot leave: transfer or delete the guild first"));
            }
            EventBody::MemberLeft { user: actor.clone() }
        }
        C::Kick { user, reason } => {
            ctx.require(Permissions::KICK_MEMBERS)?;
            guild.member(user)?;
            ctx.above_member(user)?;
            EventBody::MemberKicked { user: user.clone(), reason: validate::reason(reason)? }
        }
        C::Ban { user, reason, purge_seconds } => {
            ctx.require(Permissions::BAN_MEMBERS)?;
            if guild.bans.contains_key(user) {
                return Err(DomainError::conflict(format!("{user} is already banned")));
            }
            ctx.above_member(user)?;
            if *purge_seconds > MAX_PURGE_SECONDS {
                return Err(DomainError::invalid(
                    "deleteMessageSeconds",
                    format!("must be at most {MAX_PURGE_SECONDS} (7 days)"),
                ));
            }
            let purge_since = (*purge_seconds > 0)
                .then(|| Timestamp::from_millis(now.as_millis().saturating_sub(u64::from(*purge_seconds) * 1000)))
                .transpose()
                .map_err(|e| DomainError::invalid("deleteMessageSeconds", e.to_string()))?;
            EventBody::MemberBanned { user: user.clone(), reason: validate::reason(reason)?, purge_since }
        }
        C::Unban { user, reason } => {
            ctx.require(Permissions::BAN_MEMBERS)?;
            if !guild.bans.contains_key(user) {
                return Err(DomainError::not_found("ban of", user));
            }
            EventBody::MemberUnbanned { user: user.clone(), reason: validate::reason(reason)? }
        }
        C::Timeout { user, until, reason } => {
            ctx.require(Permissions::MODERATE_MEMBERS)?;
            guild.member(user)?;
            ctx.above_member(user)?;
            if guild.guild_permissions(user, now).contains(Permissions::ADMINISTRATOR) {
                return Err(DomainError::conflict("administrators cannot be timed out"));
            }
            if *until <= now {
                return Err(DomainError::invalid("until", "must be in the future"));
            }
            if until.as_millis() - now.as_millis() > MAX_TIMEOUT_MS {
                return Err(DomainError::invalid("until", "a timeout lasts at most 28 days"));
            }
            EventBody::MemberTimedOut { user: user.clone(), until: *until, reason: validate::reason(reason)? }
        }
        C::RemoveTimeout { user, reason } => {
            ctx.require(Permissions::MODERATE_MEMBERS)?;
            if guild.timed_out_until(user, now).is_none() {
                return Err(DomainError::conflict(format!("{user} is not timed out")));
            }
            ctx.above_member(user)?;
            EventBody::TimeoutRemoved { user: user.clone(), reason: validate::reason(reason)? }
        }
        C::SetNickname { user, nickname } => {
            guild.member(user)?;
            if user != actor {
                ctx.require(Permissions::MANAGE_GUILD)?;
                ctx.above_member(user)?;
            }
            let nickname = nickname.as_deref().map(|n| validate::text("nickname", n, 32)).transpose()?;
            EventBody::NicknameSet { user: user.clone(), nickname }
        }
        C::FileReport { report, target, reason } => {
            if guild.reports.contains_key(report) {
                return Err(DomainError::conflict(format!("report {report} already exists")));
            }
            match target {
                ReportTarget::Message { channel, .. } => {
                    guild.channel(channel)?;
                    ctx.require_in(Place::Channel(*channel), Permissions::VIEW_CHANNEL)?;
                }
                ReportTarget::Member { user } => drop(guild.member(user)?),
            }
            EventBody::ReportFiled {
                report: *report,
                target: target.clone(),
                reason: validate::text("reason", reason, 512)?,
            }
        }
        C::AssignReport { report, assignee } => {
            ctx.require(Permissions::MODERATE_MEMBERS)?;
            let open = guild.reports.get(report).ok_or_else(|| DomainError::not_found("report", report))?;
            if open.resolution.is_some() {
                return Err(DomainError::conflict("the report is already resolved"));
            }
            if let Some(user) = assignee {
                guild.member(user)?;
                if !guild.guild_permissions(user, now).contains(Permissions::MODERATE_MEMBERS) {
                    return Err(DomainError::invalid("assignee", format!("{user} cannot moderate (MODERATE_MEMBERS)")));
                }
            }
            EventBody::ReportAssigned { report: *report, assignee: assignee.clone() }
        }
        C::ResolveReport { report, action, reason } => {
            ctx.require(Permissions::MODERATE_MEMBERS)?;
            let open = guild.reports.get(report).ok_or_else(|| DomainError::not_found("report", report))?;
            if open.resolution.is_some() {
                return Err(DomainError::conflict("the report is already resolved"));
            }
            EventBody::ReportResolved { report: *report, action: *action, reason: validate::reason(reason)? }
        }
    };
    Ok(vec![body])
}

/// Decides what a hub operator may do in any guild, member or not: archive it, resolve
/// a report, ban a user (the guild's part of a hub-wide ban). Anything else is a guild's own
/// business and is refused. (That the actor *is* an operator is the hub stream's to say;
/// the caller checks it.)
pub fn decide_as_operator(guild: &Guild, cmd: &GuildCommand, now: Timestamp) -> Result<Vec<EventBody>, DomainError> {
    use GuildCommand as C;
    guild.exists()?;
    let body = match cmd {
        C::ArchiveGuild { reason } => {
            if guild.archived {
                return Err(DomainError::conflict("the guild is already archived"));
            }
            EventBody::GuildArchived { reason: validate::reason(reason)? }
        }
        C::ResolveReport { report, action, reason } => {
            let open = guild.reports.get(report).ok_or_else(|| DomainError::not_found("report", report))?;
            if open.resolution.is_some() {
                return Err(DomainError::conflict("the report is already resolved"));
            }
            EventBody::ReportResolved { report: *report, action: *action, reason: validate::reason(reason)? }
        }
        C::Ban { user, reason, purge_seconds } => {
            if guild.bans.contains_key(user) {
                return Err(DomainError::conflict(format!("{user} is already banned")));
            }
            let purge_since = (*purge_seconds > 0)
                .then(|| Timestamp::from_millis(now.as_millis().saturating_sub(u64::from(*purge_seconds) * 1000)))
                .transpose()
                .map_err(|e| DomainError::invalid("deleteMessageSeconds", e.to_string()))?;
            EventBody::MemberBanned { user: user.clone(), reason: validate::reason(reason)?, purge_since }
        }
        _ => {
            return Err(DomainError::invalid(
                "command",
                "hub operators archive guilds, resolve reports and ban; nothing else",
            ));
        }
    };
    Ok(vec![body])
}

/// Applies one event of the guild's stream.
pub fn evolve(mut guild: Guild, event: &Event) -> Guild {
    use EventBody as E;
    let sender = &event.core.sender;
    let ts = event.core.ts;
    match event.content().clone() {
        E::GuildCreated(c) => {
            guild.id = guild_id_for(&c).ok();
            guild.name = c.name;
            guild.owner = Some(c.creator.clone());
            guild.origin = Some(c.origin);
            guild.created_at = c.created_at;
            guild.roles.insert(
                RoleId::EVERYONE,
                Role { name: "@everyone".into(), permissions: Permissions::DEFAULT_EVERYONE },
            );
            guild.members.insert(c.creator, Member { roles: BTreeSet::new(), nickname: None, joined_at: ts });
        }
        E::GuildUpdated { name, description } => {
            if let Some(name) = name {
                guild.name = name;
            }
            if description.is_some() {
                guild.description = description;
            }
        }
        E::GuildArchived { .. } => guild.archived = true,
        E::GuildDeleted { .. } => guild.deleted = true,
        E::CategoryCreated { category, name, position } => {
            guild.categories.insert(category, Category { name, position, overwrites: Overwrites::new() });
        }
        E::CategoryUpdated { category, name, position } => {
            if let Some(c) = guild.categories.get_mut(&category) {
                c.name = name;
                c.position = position;
            }
        }
        E::CategoryDeleted { category } => {
            guild.categories.remove(&category);
            // Its channels stay, uncategorised, as on Discord.
            for channel in guild.channels.values_mut().filter(|c| c.category == Some(category)) {
                channel.category = None;
            }
        }
        E::ChannelCreated { channel, name, kind, category, position, topic } => {
            guild.channels.insert(
                channel,
                Channel {
                    name,
                    kind,
                    category,
                    position,
                    topic,
                    overwrites: Overwrites::new(),
                    slow_mode_seconds: 0,
                    locked: false,
                    archived: false,
                },
            );
        }
        E::ChannelUpdated { channel, name, topic } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.name = name;
                c.topic = topic;
            }
        }
        E::ChannelMoved { channel, category, position } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.category = category;
                c.position = position;
            }
        }
        E::ChannelDeleted { channel } => {
            guild.channels.remove(&channel);
        }
        E::SlowModeSet { channel, seconds } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.slow_mode_seconds = seconds;
            }
        }
        E::ChannelLocked { channel, locked, .. } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.locked = locked;
            }
        }
        E::ChannelArchived { channel, .. } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.archived = true;
            }
        }
        E::OverwriteSet { place, target, allow, deny } => {
            let overwrites = match place {
                Place::Channel(c) => guild.channels.get_mut(&c).map(|c| &mut c.overwrites),
                Place::Category(c) => guild.categories.get_mut(&c).map(|c| &mut c.overwrites),
            };
            if let Some(ows) = overwrites {
                if allow.is_empty() && deny.is_empty() {
                    ows.remove(&target);
                } else {
                    ows.insert(target, Overwrite { allow, deny });
                }
            }
        }
        E::RoleCreated { role, name, permissions, position } => {
            guild.roles.insert(role, Role { name, permissions });
            let at = (position.max(1) as usize - 1).min(guild.role_order.len());
            guild.role_order.insert(at, role);
        }
        E::RoleUpdated { role, name, permissions } => {
            if let Some(r) = guild.roles.get_mut(&role) {
                r.name = name;
                r.permissions = permissions;
            }
        }
        E::RolesReordered { order } => guild.role_order = order,
        E::RoleDeleted { role } => {
            guild.roles.remove(&role);
            guild.role_order.retain(|r| *r != role);
            for m in guild.members.values_mut() {
                m.roles.remove(&role);
            }
            let target = OverwriteTarget::Role(role);
            for c in guild.channels.values_mut() {
                c.overwrites.remove(&target);
            }
            for c in guild.categories.values_mut() {
                c.overwrites.remove(&target);
            }
        }
        E::RoleAssigned { user, role, .. } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.roles.insert(role);
            }
        }
        E::RoleUnassigned { user, role, .. } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.roles.remove(&role);
            }
        }
        E::InviteCreated { code, max_uses, expires_at } => {
            guild.invites.insert(code, Invite { creator: sender.clone(), max_uses, uses: 0, expires_at });
        }
        E::InviteRevoked { code } => {
            guild.invites.remove(&code);
        }
        E::MemberJoined { user, invite } => {
            if let Some(i) = invite.and_then(|code| guild.invites.get_mut(&code)) {
                i.uses += 1;
            }
            guild.members.insert(user, Member { roles: BTreeSet::new(), nickname: None, joined_at: ts });
        }
        E::MemberLeft { user } | E::MemberKicked { user, .. } => {
            guild.members.remove(&user);
        }
        E::MemberBanned { user, reason, .. } => {
            guild.members.remove(&user);
            guild.bans.insert(user, Ban { by: sender.clone(), reason, at: ts });
        }
        E::MemberUnbanned { user, .. } => {
            guild.bans.remove(&user);
        }
        E::MemberTimedOut { user, until, .. } => {
            guild.timeouts.insert(user, until);
        }
        E::TimeoutRemoved { user, .. } => {
            guild.timeouts.remove(&user);
        }
        E::NicknameSet { user, nickname } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.nickname = nickname;
            }
        }
        E::ReportFiled { report, target, reason } => {
            guild.reports.insert(
                report,
                Report { reporter: sender.clone(), target, reason, filed_at: ts, resolution: None, assignee: None },
            );
        }
        E::ReportResolved { report, action, .. } => {
            if let Some(r) = guild.reports.get_mut(&report) {
                r.resolution = Some((action, sender.clone()));
            }
        }
        E::ReportAssigned { report, assignee } => {
            if let Some(r) = guild.reports.get_mut(&report) {
                r.assignee = assignee;
            }
        }
        E::MessagePosted { .. }
        | E::MessageEdited { .. }
        | E::MessageRedacted { .. }
        | E::ReactionAdded { .. }
        | E::ReactionRemoved { .. }
        | E::MessagePinned { .. }
        | E::MessageUnpinned { .. }
        | E::AccountRegistered { .. }
        | E::PasswordSet { .. }
        | E::SessionOpened { .. }
        | E::SessionRevoked { .. }
        | E::OperatorGranted { .. }
        | E::OperatorRevoked { .. }
        | E::CreatorGranted { .. }
        | E::OperatorActed { .. }
        | E::UserBanned { .. }
        | E::ServiceTokenCreated { .. }
        | E::ServiceTokenRevoked { .. }
        | E::ExternalUserLinked { .. }
        | E::ExternalGuildLinked { .. }
        | E::ExternalChannelLinked { .. } => {}
    }
    guild.version = event.core.seq;
    guild.head = Some(event.id);
    guild
}

impl Guild {
    /// Folds a stream's events into a guild.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Guild {
        events.into_iter().fold(Guild::default(), evolve)
    }

    pub fn is_owner(&self, user: &UserId) -> bool {
        self.owner.as_ref() == Some(user)
    }

    /// When the user's timeout ends, if they are timed out at `now`.
    pub fn timed_out_until(&self, user: &UserId, now: Timestamp) -> Option<Timestamp> {
        self.timeouts.get(user).copied().filter(|until| *until > now)
    }

    /// A role's position: 0 for `@everyone`, 1 for the lowest other role, and so on.
    pub fn position(&self, role: &RoleId) -> u32 {
        self.role_order.iter().position(|r| r == role).map_or(0, |i| i as u32 + 1)
    }

    /// The position of the member's highest role (0 with only `@everyone`).
    pub fn top_position(&self, user: &UserId) -> u32 {
        self.members.get(user).and_then(|m| m.roles.iter().map(|r| self.position(r)).max()).unwrap_or(0)
    }

    /// What one member needs for the permission functions; `None` if not a member.
    pub fn permission_input<'a>(
        &'a self,
        user: &'a UserId,
        place: Option<Place>,
        now: Timestamp,
    ) -> Option<PermissionInput<'a>> {
        let member = self.members.get(user)?;
        let mut roles: Vec<(RoleId, Permissions)> =
            member.roles.iter().filter_map(|r| self.roles.get(r).map(|role| (*r, role.permissions))).collect();
        roles.sort_by_key(|(r, _)| std::cmp::Reverse(self.position(r)));
        let mut layers: Vec<(Scope, &Overwrites)> = Vec::new();
        match place {
            Some(Place::Channel(c)) => {
                let channel = self.channels.get(&c)?;
                if let Some(cat) = channel.category.and_then(|cat| self.categories.get(&cat)) {
                    layers.push((Scope::Category, &cat.overwrites));
                }
                layers.push((Scope::Channel, &channel.overwrites));
            }
            Some(Place::Category(c)) => layers.push((Scope::Category, &self.categories.get(&c)?.overwrites)),
            None => {}
        }
        Some(PermissionInput {
            user,
            is_owner: self.is_owner(user),
            everyone: self.roles.get(&RoleId::EVERYONE).map_or(Permissions::empty(), |r| r.permissions),
            roles,
            layers,
            timed_out_until: self.timed_out_until(user, now),
            in_channel: matches!(place, Some(Place::Channel(_))),
        })
    }

    /// A member's guild-wide permissions (empty for non-members).
    pub fn guild_permissions(&self, user: &UserId, now: Timestamp) -> Permissions {
        self.permission_input(user, None, now).map_or(Permissions::empty(), |i| permissions::compute(&i))
    }

    /// A member's permissions in a channel (empty for non-members and unknown channels).
    pub fn channel_permissions(&self, user: &UserId, channel: ChannelId, now: Timestamp) -> Permissions {
        self.permission_input(user, Some(Place::Channel(channel)), now)
            .map_or(Permissions::empty(), |i| permissions::compute(&i))
    }

    /// Why the member has or lacks each permission in the channel (or guild-wide).
    pub fn explain(&self, user: &UserId, channel: Option<ChannelId>, now: Timestamp) -> Option<Vec<Verdict>> {
        self.permission_input(user, channel.map(Place::Channel), now).map(|i| permissions::explain(&i))
    }

    fn decide_join(&self, actor: &UserId, code: &InviteCode, now: Timestamp) -> Result<Vec<EventBody>, DomainError> {
        if self.bans.contains_key(actor) {
            return Err(DomainError::Forbidden(Refusal::Banned));
        }
        if self.archived {
            return Err(DomainError::Forbidden(Refusal::Archived));
        }
        if self.members.contains_key(actor) {
            return Err(DomainError::conflict("you are already a member"));
        }
        let invite = self.invites.get(code).ok_or_else(|| DomainError::not_found("invite", code))?;
        if invite.expires_at.is_some_and(|t| t <= now) {
            return Err(DomainError::invalid("invite", "the invite has expired"));
        }
        if invite.max_uses.is_some_and(|max| invite.uses >= max) {
            return Err(DomainError::invalid("invite", "the invite has been used up"));
        }
        Ok(vec![EventBody::MemberJoined { user: actor.clone(), invite: Some(code.clone()) }])
    }

    /// Refuses a guild that was never created or has been deleted.
    pub(crate) fn exists(&self) -> Result<GuildId, DomainError> {
        match self.id {
            Some(id) if !self.deleted => Ok(id),
            Some(id) => Err(DomainError::NotFound { what: "guild", id: format!("{id} (deleted)") }),
            None => Err(DomainError::NotFound { what: "guild", id: "(never created)".into() }),
        }
    }

    pub(crate) fn channel(&self, id: &ChannelId) -> Result<&Channel, DomainError> {
        self.channels.get(id).ok_or_else(|| DomainError::not_found("channel", id))
    }

    fn category(&self, id: &CategoryId) -> Result<&Category, DomainError> {
        self.categories.get(id).ok_or_else(|| DomainError::not_found("category", id))
    }

    fn role(&self, id: &RoleId) -> Result<&Role, DomainError> {
        self.roles.get(id).ok_or_else(|| DomainError::not_found("role", id))
    }

    fn member(&self, id: &UserId) -> Result<&Member, DomainError> {
        self.members.get(id).ok_or_else(|| DomainError::not_found("member", id))
    }
}

/// One decision's actor and their guild-wide permissions.
struct Ctx<'a> {
    guild: &'a Guild,
    actor: &'a UserId,
    now: Timestamp,
    perms: Permissions,
}

impl Ctx<'_> {
    fn is_owner(&self) -> bool {
        self.guild.is_owner(self.actor)
    }

    fn is_admin(&self) -> bool {
        self.perms.contains(Permissions::ADMINISTRATOR)
    }

    fn require(&self, needed: Permissions) -> Result<(), DomainError> {
        if self.perms.contains(needed) { Ok(()) } else { Err(self.refuse(needed)) }
    }

    /// Requires a permission in a channel or category; returns what the actor holds there.
    fn require_in(&self, place: Place, needed: Permissions) -> Result<Permissions, DomainError> {
        let held = self
            .guild
            .permission_input(self.actor, Some(place), self.now)
            .map_or(Permissions::empty(), |i| permissions::compute(&i));
        if held.contains(needed) { Ok(held) } else { Err(self.refuse(needed)) }
    }

    fn refuse(&self, needed: Permissions) -> DomainError {
        match self.guild.timed_out_until(self.actor, self.now) {
            Some(until) => DomainError::TimedOut { until },
            None => DomainError::missing(needed),
        }
    }

    fn owner_only(&self) -> Result<(), DomainError> {
        if self.is_owner() { Ok(()) } else { Err(DomainError::Forbidden(Refusal::OwnerOnly)) }
    }

    /// Nobody grants what they do not hold (the owner and administrators hold everything).
    fn can_grant(&self, granted: Permissions) -> Result<(), DomainError> {
        let beyond = granted - self.perms;
        if beyond.is_empty() { Ok(()) } else { Err(DomainError::Forbidden(Refusal::CannotGrant(beyond))) }
    }

    /// The role must sit below the actor's highest role.
    fn above_role(&self, role: &RoleId) -> Result<(), DomainError> {
        if self.is_owner() || self.guild.position(role) < self.guild.top_position(self.actor) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(Refusal::RoleNotBelow))
        }
    }

    /// The target's highest role must sit below the actor's; nobody acts on the owner or
    /// on themself.
    fn above_member(&self, target: &UserId) -> Result<(), DomainError> {
        if target == self.actor {
            return Err(DomainError::invalid("userId", "you cannot do this to yourself"));
        }
        if self.guild.is_owner(target) {
            return Err(DomainError::Forbidden(Refusal::Hierarchy));
        }
        if self.is_owner() || self.guild.top_position(target) < self.guild.top_position(self.actor) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(Refusal::Hierarchy))
        }
    }
}

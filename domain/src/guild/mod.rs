//! The guild aggregate: its commands, `create`, `decide` and `decide_as_operator`, and the
//! guild's own settings (rename, archive, delete).
//!
//! A guild's stream holds its governance: channels, categories, roles, overwrites,
//! membership, moderation and reports. A decision needs the whole guild, which is small, so
//! the guild is held in memory and rebuilt by folding its stream with [`evolve`].
//!
//! `decide` checks who may act at all, then hands each command to the module of its
//! concern: `channels`, `roles`, `membership`, `moderation`, `reports`. What they all check
//! (permissions, grants, the role hierarchy, lookups) is in `checks`; the state and
//! `evolve` are in `state`. Those modules use `checks` and `state`, never this one, so
//! imports point one way.

mod channels;
mod checks;
mod membership;
mod moderation;
mod reports;
mod roles;
mod state;

pub use channels::{MAX_SLOW_MODE_SECONDS, MAX_USER_LIMIT};
pub use moderation::{MAX_PURGE_SECONDS, MAX_TIMEOUT_MS};
pub use state::{Ban, Category, Channel, Guild, Invite, Member, Opening, Report, Role, ThreadOf, evolve};

use std::collections::BTreeSet;

use crate::body::{ChannelKind, EventBody, GuildCreated, Place, ReportAction, ReportTarget};
use crate::error::{DomainError, Refusal};
use crate::event::guild_id_for;
use crate::ids::{CategoryId, ChannelId, GuildId, InviteCode, ReportId, RoleId, ServerName, Timestamp, UserId};
use crate::permissions::{Overwrite, OverwriteTarget, Permissions};
use crate::validate;

use checks::Ctx;

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
    /// Creates a channel with its permission overwrites in one decision, so a private
    /// channel is never public in between. Each overwrite is checked as `SetOverwrite`
    /// would check it on the new channel; each target appears at most once.
    CreateChannel {
        channel: ChannelId,
        name: String,
        kind: ChannelKind,
        category: Option<CategoryId>,
        topic: String,
        overwrites: Vec<(OverwriteTarget, Overwrite)>,
    },
    /// Starts a thread (a channel of kind `Thread`) under a message of `parent`.
    StartThread {
        thread: ChannelId,
        parent: ChannelId,
        message: crate::ids::MessageId,
        name: String,
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
    /// Caps how many people a voice channel holds at once (0: no cap).
    SetUserLimit {
        channel: ChannelId,
        limit: u32,
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
        dm: None,
    };
    let id = guild_id_for(&created).map_err(|e| DomainError::invalid("name", e.to_string()))?;
    Ok((id, EventBody::GuildCreated(created)))
}

/// The channel an event of a guild's stream opens, with its guild: a `channel.created`, or
/// the one channel of a DM, which comes with the DM's `guild.created` and has its bytes.
pub fn opened_channel(event: &crate::event::Event) -> Option<(ChannelId, GuildId)> {
    let crate::ids::StreamId::Guild(guild) = &event.core.stream else { return None };
    match event.content() {
        EventBody::ChannelCreated { channel, .. } | EventBody::ThreadStarted { thread: channel, .. } => {
            Some((*channel, *guild))
        }
        EventBody::GuildCreated(created) if created.dm.is_some() => {
            Some((ChannelId::from_bytes(*guild.as_bytes()), *guild))
        }
        _ => None,
    }
}

/// The most people a group DM holds, its creator included.
pub const MAX_DM_MEMBERS: usize = 10;

/// The body of a new direct message's first event and the id it names: a conversation of
/// `creator` and `others` (1 to 9 people), owned by the creator's hub.
pub fn create_dm(
    creator: &UserId,
    origin: &ServerName,
    others: &BTreeSet<UserId>,
    nonce: [u8; 16],
    now: Timestamp,
) -> Result<(GuildId, EventBody), DomainError> {
    check_dm_people(creator, others)?;
    let mut members = others.clone();
    members.insert(creator.clone());
    let created = GuildCreated {
        creator: creator.clone(),
        origin: origin.clone(),
        created_at: now,
        nonce,
        name: String::new(),
        dm: Some(members),
    };
    let id = guild_id_for(&created).map_err(|e| DomainError::invalid("userIds", e.to_string()))?;
    Ok((id, EventBody::GuildCreated(created)))
}

/// Whether `creator` and `others` make a DM: 1 to 9 others, the creator not among them.
pub fn check_dm_people(creator: &UserId, others: &BTreeSet<UserId>) -> Result<(), DomainError> {
    if others.contains(creator) {
        return Err(DomainError::invalid("userIds", "list the others in the conversation, not yourself"));
    }
    if others.is_empty() || others.len() >= MAX_DM_MEMBERS {
        return Err(DomainError::invalid(
            "userIds",
            format!("a direct message is you and 1 to {} others; {} were given", MAX_DM_MEMBERS - 1, others.len()),
        ));
    }
    Ok(())
}

/// What a direct message's people may do to it: leave a group DM, or rename it. It has no
/// roles, channels, invites or moderators to change.
fn decide_dm(guild: &Guild, actor: &UserId, cmd: &GuildCommand) -> Result<Vec<EventBody>, DomainError> {
    use GuildCommand as C;
    if !guild.members.contains_key(actor) {
        return Err(DomainError::Forbidden(Refusal::NotMember));
    }
    let group = guild.members.len() > 2
        || guild.dm_channel().and_then(|c| guild.channels.get(&c)).is_some_and(|c| c.kind == ChannelKind::GroupDm);
    let body = match cmd {
        C::Leave if group => EventBody::MemberLeft { user: actor.clone() },
        C::UpdateGuild { name: Some(name), description: None } if group => {
            EventBody::GuildUpdated { name: Some(validate::name("name", name)?), description: None }
        }
        C::FileReport { .. } => {
            return Err(DomainError::invalid(
                "command",
                "a direct message has no moderators to report to; block the user instead",
            ));
        }
        _ => {
            return Err(DomainError::invalid(
                "command",
                "a direct message has no roles, channels, invites or moderators; a group DM can only be renamed or left",
            ));
        }
    };
    Ok(vec![body])
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
    if guild.dm {
        return decide_dm(guild, actor, cmd);
    }
    if let C::Join { invite } = cmd {
        return membership::join(guild, actor, invite, now);
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
    let ctx = &Ctx { guild, actor, now, perms: guild.guild_permissions(actor, now) };
    let body = match cmd {
        C::UpdateGuild { name, description } => update(ctx, name.as_deref(), description.as_deref()),
        C::ArchiveGuild { reason } => archive(ctx, reason),
        C::DeleteGuild { reason } => delete(ctx, reason),

        C::CreateCategory { category, name } => channels::create_category(ctx, category, name),
        C::UpdateCategory { category, name, position } => {
            channels::update_category(ctx, category, name.as_deref(), *position)
        }
        C::DeleteCategory { category } => channels::delete_category(ctx, category),
        // The one command that decides several events: the channel and its overwrites.
        C::CreateChannel { channel, name, kind, category, topic, overwrites } => {
            return channels::create_channel(ctx, channel, name, *kind, *category, topic, overwrites);
        }
        C::StartThread { thread, parent, message, name } => channels::start_thread(ctx, thread, parent, message, name),
        C::UpdateChannel { channel, name, topic } => {
            channels::update_channel(ctx, channel, name.as_deref(), topic.as_deref())
        }
        C::MoveChannel { channel, category, position } => channels::move_channel(ctx, channel, *category, *position),
        C::DeleteChannel { channel } => channels::delete_channel(ctx, channel),
        C::SetSlowMode { channel, seconds } => channels::set_slow_mode(ctx, channel, *seconds),
        C::SetUserLimit { channel, limit } => channels::set_user_limit(ctx, channel, *limit),
        C::ArchiveChannel { channel, reason } => channels::archive_channel(ctx, channel, reason),
        C::LockChannel { channel, locked, reason } => channels::lock_channel(ctx, channel, *locked, reason),
        C::SetOverwrite { place, target, allow, deny } => channels::set_overwrite(ctx, *place, target, *allow, *deny),

        C::CreateRole { role, name, permissions } => roles::create(ctx, role, name, *permissions),
        C::UpdateRole { role, name, permissions } => roles::update(ctx, role, name.as_deref(), *permissions),
        C::ReorderRoles { order } => roles::reorder(ctx, order),
        C::DeleteRole { role } => roles::delete(ctx, role),
        C::AssignRole { user, role, reason } => roles::assign(ctx, true, user, role, reason),
        C::UnassignRole { user, role, reason } => roles::assign(ctx, false, user, role, reason),

        C::CreateInvite { code, max_uses, expires_at } => membership::create_invite(ctx, code, *max_uses, *expires_at),
        C::RevokeInvite { code } => membership::revoke_invite(ctx, code),
        C::Join { .. } => Err(DomainError::conflict("you are already a member")),
        C::Leave => membership::leave(ctx),
        C::AddMember { user } => membership::add_member(ctx, user),
        C::SetNickname { user, nickname } => membership::set_nickname(ctx, user, nickname.as_deref()),

        C::Kick { user, reason } => moderation::kick(ctx, user, reason),
        C::Ban { user, reason, purge_seconds } => moderation::ban(ctx, user, reason, *purge_seconds),
        C::Unban { user, reason } => moderation::unban(ctx, user, reason),
        C::Timeout { user, until, reason } => moderation::timeout(ctx, user, *until, reason),
        C::RemoveTimeout { user, reason } => moderation::remove_timeout(ctx, user, reason),

        C::FileReport { report, target, reason } => reports::file(ctx, report, target, reason),
        C::AssignReport { report, assignee } => reports::assign(ctx, report, assignee.as_ref()),
        C::ResolveReport { report, action, reason } => reports::resolve(ctx, report, *action, reason),
    }?;
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
        C::ResolveReport { report, action, reason } => reports::resolved(guild, report, *action, reason)?,
        C::Ban { user, reason, purge_seconds } => {
            if guild.bans.contains_key(user) {
                return Err(DomainError::conflict(format!("{user} is already banned")));
            }
            moderation::banned(user, reason, *purge_seconds, now)?
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

/// Decides one overwrite of the channel `guild.opening` names, as `CreateChannel` decided it
/// with the channel: on the channel as just created, so an earlier overwrite of the same
/// creation that narrowed the actor's rights does not refuse a later one. A replica uses
/// it to check the overwrites a `channel.created` brought with it.
pub fn decide_opening_overwrite(
    guild: &Guild,
    actor: &UserId,
    target: &OverwriteTarget,
    overwrite: Overwrite,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    guild.exists()?;
    let opening =
        guild.opening.as_ref().filter(|o| o.by == *actor && o.at == now).ok_or_else(|| {
            DomainError::invalid("overwrite", "no channel is being created by this sender at this time")
        })?;
    let channel = guild.channel(&opening.channel)?;
    let ctx = &Ctx { guild, actor, now, perms: guild.guild_permissions(actor, now) };
    let held = ctx.require_in_new_channel(channel.category, Permissions::MANAGE_ROLES)?;
    Ok(channels::new_channel_overwrite(ctx, held, opening.channel, target, overwrite)?.into_iter().collect())
}

fn update(ctx: &Ctx, name: Option<&str>, description: Option<&str>) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_GUILD)?;
    Ok(EventBody::GuildUpdated {
        name: name.map(|n| validate::name("name", n)).transpose()?,
        description: description.map(|d| validate::text("description", d, 1024)).transpose()?,
    })
}

fn archive(ctx: &Ctx, reason: &str) -> Result<EventBody, DomainError> {
    ctx.owner_only()?;
    Ok(EventBody::GuildArchived { reason: validate::reason(reason)? })
}

fn delete(ctx: &Ctx, reason: &str) -> Result<EventBody, DomainError> {
    ctx.owner_only()?;
    Ok(EventBody::GuildDeleted { reason: validate::reason(reason)? })
}

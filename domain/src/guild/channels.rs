//! Deciding the guild's layout: categories, channels (create, rename, move, delete, slow
//! mode, lock, archive) and the permission overwrites set on either.

use std::collections::BTreeSet;

use crate::body::{ChannelKind, EventBody, Place};
use crate::error::{DomainError, Refusal};
use crate::ids::{CategoryId, ChannelId, MessageId, RoleId};
use crate::permissions::{Overwrite, OverwriteTarget, Permissions};
use crate::validate;

use super::checks::Ctx;

/// The longest slow mode.
pub const MAX_SLOW_MODE_SECONDS: u32 = 6 * 3600;

pub(super) fn create_category(ctx: &Ctx, category: &CategoryId, name: &str) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_CHANNELS)?;
    if ctx.guild.categories.contains_key(category) {
        return Err(DomainError::conflict(format!("category {category} already exists")));
    }
    let position = ctx.guild.categories.values().map(|c| c.position + 1).max().unwrap_or(0);
    Ok(EventBody::CategoryCreated { category: *category, name: validate::name("name", name)?, position })
}

pub(super) fn update_category(
    ctx: &Ctx,
    category: &CategoryId,
    name: Option<&str>,
    position: Option<u32>,
) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_CHANNELS)?;
    let current = ctx.guild.category(category)?;
    Ok(EventBody::CategoryUpdated {
        category: *category,
        name: match name {
            Some(n) => validate::name("name", n)?,
            None => current.name.clone(),
        },
        position: position.unwrap_or(current.position),
    })
}

pub(super) fn delete_category(ctx: &Ctx, category: &CategoryId) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_CHANNELS)?;
    ctx.guild.category(category)?;
    Ok(EventBody::CategoryDeleted { category: *category })
}

/// A channel and its overwrites, decided together so they are appended together: a private
/// channel is never visible between its creation and its overwrites.
///
/// Each overwrite is checked as a `SetOverwrite` on the channel as just created (in its
/// category, no overwrites of its own): the actor needs MANAGE_ROLES there and, unless an
/// administrator, must hold every bit they allow or deny. The checks do not depend on the
/// order of the overwrites, so one that takes the actor's own rights away does not refuse
/// the others.
pub(super) fn create_channel(
    ctx: &Ctx,
    channel: &ChannelId,
    name: &str,
    kind: ChannelKind,
    category: Option<CategoryId>,
    topic: &str,
    overwrites: &[(OverwriteTarget, Overwrite)],
) -> Result<Vec<EventBody>, DomainError> {
    let guild = ctx.guild;
    if guild.channels.contains_key(channel) {
        return Err(DomainError::conflict(format!("channel {channel} already exists")));
    }
    if matches!(kind, ChannelKind::Dm | ChannelKind::GroupDm | ChannelKind::Thread) {
        return Err(DomainError::invalid(
            "kind",
            "a guild's channel is TEXT, VOICE or ANNOUNCEMENT; open a DM with openDm, a thread with startThread",
        ));
    }
    match category {
        Some(cat) => {
            guild.category(&cat)?;
            ctx.require_in(Place::Category(cat), Permissions::MANAGE_CHANNELS)?;
        }
        None => ctx.require(Permissions::MANAGE_CHANNELS)?,
    }
    let position =
        guild.channels.values().filter(|c| c.category == category).map(|c| c.position + 1).max().unwrap_or(0);
    let mut bodies = vec![EventBody::ChannelCreated {
        channel: *channel,
        name: validate::channel_name(name)?,
        kind,
        category,
        position,
        topic: validate::text_or_empty("topic", topic, 1024)?,
    }];
    if overwrites.is_empty() {
        return Ok(bodies);
    }
    let held = ctx.require_in_new_channel(category, Permissions::MANAGE_ROLES)?;
    let mut seen = BTreeSet::new();
    for (target, overwrite) in overwrites {
        if !seen.insert(target) {
            return Err(DomainError::invalid(
                "overwrites",
                format!("{} appears twice; give each role or member one overwrite", describe(target)),
            ));
        }
        bodies.extend(new_channel_overwrite(ctx, held, *channel, target, *overwrite)?);
    }
    Ok(bodies)
}

/// One overwrite of a channel being created, given what the actor `held` on it as created:
/// nothing for an empty overwrite (it is no overwrite).
pub(super) fn new_channel_overwrite(
    ctx: &Ctx,
    held: Permissions,
    channel: ChannelId,
    target: &OverwriteTarget,
    Overwrite { allow, deny }: Overwrite,
) -> Result<Option<EventBody>, DomainError> {
    if let OverwriteTarget::Role(role) = target {
        ctx.guild.role(role)?;
    }
    check_overwrite(ctx, held, allow, deny)?;
    if allow.is_empty() && deny.is_empty() {
        return Ok(None);
    }
    Ok(Some(EventBody::OverwriteSet { place: Place::Channel(channel), target: target.clone(), allow, deny }))
}

/// The longest thread name, as on Discord.
const MAX_THREAD_NAME: usize = 100;

/// Starts a thread under `message` of `parent` (the caller has checked that the message is
/// in that channel and not deleted: the guild's stream does not hold messages).
pub(super) fn start_thread(
    ctx: &Ctx,
    thread: &ChannelId,
    parent: &ChannelId,
    message: &MessageId,
    name: &str,
) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
    let p = guild.channel(parent)?;
    if p.kind != ChannelKind::Text && p.kind != ChannelKind::Announcement {
        return Err(DomainError::invalid("messageId", "threads start from messages of text and announcement channels"));
    }
    if p.archived {
        return Err(DomainError::Forbidden(Refusal::Archived));
    }
    ctx.require_in(Place::Channel(*parent), Permissions::VIEW_CHANNEL | Permissions::CREATE_PUBLIC_THREADS)?;
    if let Some(existing) = guild.thread_of(message) {
        return Err(DomainError::conflict(format!("the message already has thread {existing}")));
    }
    if guild.channels.contains_key(thread) {
        return Err(DomainError::conflict(format!("channel {thread} already exists")));
    }
    Ok(EventBody::ThreadStarted {
        thread: *thread,
        parent: *parent,
        message: *message,
        name: validate::text("name", name, MAX_THREAD_NAME)?,
    })
}

pub(super) fn update_channel(
    ctx: &Ctx,
    channel: &ChannelId,
    name: Option<&str>,
    topic: Option<&str>,
) -> Result<EventBody, DomainError> {
    let current = ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    Ok(EventBody::ChannelUpdated {
        channel: *channel,
        name: match name {
            Some(n) => validate::channel_name(n)?,
            None => current.name.clone(),
        },
        topic: match topic {
            Some(t) => validate::text_or_empty("topic", t, 1024)?,
            None => current.topic.clone(),
        },
    })
}

pub(super) fn move_channel(
    ctx: &Ctx,
    channel: &ChannelId,
    category: Option<CategoryId>,
    position: Option<u32>,
) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
    guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    if let Some(cat) = category {
        guild.category(&cat)?;
        ctx.require_in(Place::Category(cat), Permissions::MANAGE_CHANNELS)?;
    }
    let position = match position {
        Some(p) => p,
        None => guild
            .channels
            .iter()
            .filter(|(id, c)| *id != channel && c.category == category)
            .map(|(_, c)| c.position.saturating_add(1))
            .max()
            .unwrap_or(0),
    };
    Ok(EventBody::ChannelMoved { channel: *channel, category, position })
}

pub(super) fn delete_channel(ctx: &Ctx, channel: &ChannelId) -> Result<EventBody, DomainError> {
    ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    Ok(EventBody::ChannelDeleted { channel: *channel })
}

pub(super) fn set_slow_mode(ctx: &Ctx, channel: &ChannelId, seconds: u32) -> Result<EventBody, DomainError> {
    ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    if seconds > MAX_SLOW_MODE_SECONDS {
        return Err(DomainError::invalid("seconds", format!("slow mode is at most {MAX_SLOW_MODE_SECONDS} seconds")));
    }
    Ok(EventBody::SlowModeSet { channel: *channel, seconds })
}

/// The largest user limit a voice channel takes (Discord's).
pub const MAX_USER_LIMIT: u32 = 99;

pub(super) fn set_user_limit(ctx: &Ctx, channel: &ChannelId, limit: u32) -> Result<EventBody, DomainError> {
    let current = ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    if current.kind != ChannelKind::Voice {
        return Err(DomainError::invalid("channel", "only a voice channel has a user limit"));
    }
    if limit > MAX_USER_LIMIT {
        return Err(DomainError::invalid(
            "limit",
            format!("a voice channel holds at most {} people (0: no limit)", MAX_USER_LIMIT),
        ));
    }
    Ok(EventBody::UserLimitSet { channel: *channel, limit })
}

pub(super) fn archive_channel(ctx: &Ctx, channel: &ChannelId, reason: &str) -> Result<EventBody, DomainError> {
    let current = ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    if current.archived {
        return Err(DomainError::conflict("the channel is already archived"));
    }
    Ok(EventBody::ChannelArchived { channel: *channel, reason: validate::reason(reason)? })
}

pub(super) fn lock_channel(
    ctx: &Ctx,
    channel: &ChannelId,
    locked: bool,
    reason: &str,
) -> Result<EventBody, DomainError> {
    let current = ctx.guild.channel(channel)?;
    ctx.require_in(Place::Channel(*channel), Permissions::MANAGE_CHANNELS)?;
    if current.locked == locked {
        return Err(DomainError::conflict(if locked {
            "the channel is already locked"
        } else {
            "the channel is not locked"
        }));
    }
    Ok(EventBody::ChannelLocked { channel: *channel, locked, reason: validate::reason(reason)? })
}

pub(super) fn set_overwrite(
    ctx: &Ctx,
    place: Place,
    target: &OverwriteTarget,
    allow: Permissions,
    deny: Permissions,
) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
    match place {
        Place::Channel(c) => drop(guild.channel(&c)?),
        Place::Category(c) => drop(guild.category(&c)?),
    }
    if let OverwriteTarget::Role(role) = target {
        guild.role(role)?;
    }
    let held = ctx.require_in(place, Permissions::MANAGE_ROLES)?;
    check_overwrite(ctx, held, allow, deny)?;
    Ok(EventBody::OverwriteSet { place, target: target.clone(), allow, deny })
}

/// What any overwrite must satisfy, given what the actor `held` where it is set: it grants
/// nothing the actor lacks (administrators excepted), and no bit is both allowed and denied.
fn check_overwrite(ctx: &Ctx, held: Permissions, allow: Permissions, deny: Permissions) -> Result<(), DomainError> {
    if !ctx.is_admin() {
        let beyond = (allow | deny) - held;
        if !beyond.is_empty() {
            return Err(DomainError::Forbidden(Refusal::CannotGrant(beyond)));
        }
    }
    if !(allow & deny).is_empty() {
        return Err(DomainError::invalid("deny", "a permission cannot be both allowed and denied"));
    }
    Ok(())
}

fn describe(target: &OverwriteTarget) -> String {
    match target {
        OverwriteTarget::Role(role) if *role == RoleId::EVERYONE => "@everyone".into(),
        OverwriteTarget::Role(role) => format!("role {role}"),
        OverwriteTarget::Member(user) => format!("member {user}"),
    }
}

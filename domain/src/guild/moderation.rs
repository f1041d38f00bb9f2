//! Deciding what moderators do to members: kicks, bans (with the window of messages to
//! purge), unbans, timeouts. Each acts only on members below the moderator.

use crate::body::EventBody;
use crate::error::DomainError;
use crate::ids::{Timestamp, UserId};
use crate::permissions::Permissions;
use crate::validate;

use super::checks::Ctx;

/// The longest timeout, as on Discord.
pub const MAX_TIMEOUT_MS: u64 = 28 * 24 * 3600 * 1000;
/// The longest window of messages a ban may purge.
pub const MAX_PURGE_SECONDS: u32 = 7 * 24 * 3600;

pub(super) fn kick(ctx: &Ctx, user: &UserId, reason: &str) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::KICK_MEMBERS)?;
    ctx.guild.member(user)?;
    ctx.above_member(user)?;
    Ok(EventBody::MemberKicked { user: user.clone(), reason: validate::reason(reason)? })
}

pub(super) fn ban(ctx: &Ctx, user: &UserId, reason: &str, purge_seconds: u32) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::BAN_MEMBERS)?;
    if ctx.guild.bans.contains_key(user) {
        return Err(DomainError::conflict(format!("{user} is already banned")));
    }
    ctx.above_member(user)?;
    banned(user, reason, purge_seconds, ctx.now)
}

/// The ban event, once the ban is allowed: shared with a hub operator's ban, so both purge
/// at most [`MAX_PURGE_SECONDS`] back.
pub(super) fn banned(
    user: &UserId,
    reason: &str,
    purge_seconds: u32,
    now: Timestamp,
) -> Result<EventBody, DomainError> {
    if purge_seconds > MAX_PURGE_SECONDS {
        return Err(DomainError::invalid(
            "deleteMessageSeconds",
            format!("must be at most {MAX_PURGE_SECONDS} (7 days)"),
        ));
    }
    let purge_since = (purge_seconds > 0)
        .then(|| Timestamp::from_millis(now.as_millis().saturating_sub(u64::from(purge_seconds) * 1000)))
        .transpose()
        .map_err(|e| DomainError::invalid("deleteMessageSeconds", e.to_string()))?;
    Ok(EventBody::MemberBanned { user: user.clone(), reason: validate::reason(reason)?, purge_since })
}

pub(super) fn unban(ctx: &Ctx, user: &UserId, reason: &str) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::BAN_MEMBERS)?;
    if !ctx.guild.bans.contains_key(user) {
        return Err(DomainError::not_found("ban of", user));
    }
    Ok(EventBody::MemberUnbanned { user: user.clone(), reason: validate::reason(reason)? })
}

pub(super) fn timeout(ctx: &Ctx, user: &UserId, until: Timestamp, reason: &str) -> Result<EventBody, DomainError> {
    let (guild, now) = (ctx.guild, ctx.now);
    ctx.require(Permissions::MODERATE_MEMBERS)?;
    guild.member(user)?;
    ctx.above_member(user)?;
    if guild.guild_permissions(user, now).contains(Permissions::ADMINISTRATOR) {
        return Err(DomainError::conflict("administrators cannot be timed out"));
    }
    if until <= now {
        return Err(DomainError::invalid("until", "must be in the future"));
    }
    if until.as_millis() - now.as_millis() > MAX_TIMEOUT_MS {
        return Err(DomainError::invalid("until", "a timeout lasts at most 28 days"));
    }
    Ok(EventBody::MemberTimedOut { user: user.clone(), until, reason: validate::reason(reason)? })
}

pub(super) fn remove_timeout(ctx: &Ctx, user: &UserId, reason: &str) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MODERATE_MEMBERS)?;
    if ctx.guild.timed_out_until(user, ctx.now).is_none() {
        return Err(DomainError::conflict(format!("{user} is not timed out")));
    }
    ctx.above_member(user)?;
    Ok(EventBody::TimeoutRemoved { user: user.clone(), reason: validate::reason(reason)? })
}

//! Deciding who belongs: invites, joining by one, leaving, members added directly (bots
//! and provisioned users), and nicknames.

use crate::body::EventBody;
use crate::error::{DomainError, Refusal};
use crate::ids::{InviteCode, Timestamp, UserId};
use crate::permissions::Permissions;
use crate::validate;

use super::checks::Ctx;
use super::state::Guild;

/// Joining by invite: the one command a non-member may run.
pub(super) fn join(
    guild: &Guild,
    actor: &UserId,
    code: &InviteCode,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    if guild.bans.contains_key(actor) {
        return Err(DomainError::Forbidden(Refusal::Banned));
    }
    if guild.archived {
        return Err(DomainError::Forbidden(Refusal::Archived));
    }
    if guild.members.contains_key(actor) {
        return Err(DomainError::conflict("you are already a member"));
    }
    let invite = guild.invites.get(code).ok_or_else(|| DomainError::not_found("invite", code))?;
    if invite.expires_at.is_some_and(|t| t <= now) {
        return Err(DomainError::invalid("invite", "the invite has expired"));
    }
    if invite.max_uses.is_some_and(|max| invite.uses >= max) {
        return Err(DomainError::invalid("invite", "the invite has been used up"));
    }
    Ok(vec![EventBody::MemberJoined { user: actor.clone(), invite: Some(code.clone()) }])
}

pub(super) fn add_member(ctx: &Ctx, user: &UserId) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_GUILD)?;
    if ctx.guild.bans.contains_key(user) {
        return Err(DomainError::Forbidden(Refusal::Banned));
    }
    if ctx.guild.members.contains_key(user) {
        return Err(DomainError::conflict(format!("{user} is already a member")));
    }
    Ok(EventBody::MemberJoined { user: user.clone(), invite: None })
}

pub(super) fn create_invite(
    ctx: &Ctx,
    code: &InviteCode,
    max_uses: Option<u32>,
    expires_at: Option<Timestamp>,
) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::CREATE_INVITE)?;
    if ctx.guild.invites.contains_key(code) {
        return Err(DomainError::conflict(format!("invite {code} already exists")));
    }
    if max_uses == Some(0) {
        return Err(DomainError::invalid("maxUses", "must be at least 1, or unset for unlimited"));
    }
    if expires_at.is_some_and(|t| t <= ctx.now) {
        return Err(DomainError::invalid("expiresAt", "must be in the future"));
    }
    Ok(EventBody::InviteCreated { code: code.clone(), max_uses, expires_at })
}

pub(super) fn revoke_invite(ctx: &Ctx, code: &InviteCode) -> Result<EventBody, DomainError> {
    let invite = ctx.guild.invites.get(code).ok_or_else(|| DomainError::not_found("invite", code))?;
    if invite.creator != *ctx.actor {
        ctx.require(Permissions::MANAGE_GUILD)?;
    }
    Ok(EventBody::InviteRevoked { code: code.clone() })
}

pub(super) fn leave(ctx: &Ctx) -> Result<EventBody, DomainError> {
    if ctx.is_owner() {
        return Err(DomainError::conflict("the owner cannot leave: transfer or delete the guild first"));
    }
    Ok(EventBody::MemberLeft { user: ctx.actor.clone() })
}

pub(super) fn set_nickname(ctx: &Ctx, user: &UserId, nickname: Option<&str>) -> Result<EventBody, DomainError> {
    ctx.guild.member(user)?;
    if user != ctx.actor {
        ctx.require(Permissions::MANAGE_GUILD)?;
        ctx.above_member(user)?;
    }
    let nickname = nickname.map(validate::nickname).transpose()?;
    Ok(EventBody::NicknameSet { user: user.clone(), nickname })
}

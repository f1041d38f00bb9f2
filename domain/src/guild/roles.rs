//! Deciding roles: creating, changing, reordering and deleting them, and giving them to
//! members or taking them away, always below the actor's own highest role.

use std::collections::BTreeSet;

use crate::body::EventBody;
use crate::error::{DomainError, Refusal};
use crate::ids::{RoleId, UserId};
use crate::permissions::Permissions;
use crate::validate;

use super::checks::Ctx;

pub(super) fn create(ctx: &Ctx, role: &RoleId, name: &str, permissions: Permissions) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_ROLES)?;
    if ctx.guild.roles.contains_key(role) || *role == RoleId::EVERYONE {
        return Err(DomainError::conflict(format!("role {role} already exists")));
    }
    ctx.can_grant(permissions)?;
    Ok(EventBody::RoleCreated { role: *role, name: validate::name("name", name)?, permissions, position: 1 })
}

pub(super) fn update(
    ctx: &Ctx,
    role: &RoleId,
    name: Option<&str>,
    permissions: Option<Permissions>,
) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_ROLES)?;
    let current = ctx.guild.role(role)?;
    ctx.above_role(role)?;
    if let Some(p) = permissions {
        // Only what changes must be held: keeping a bit you lack is no grant.
        ctx.can_grant(p ^ current.permissions)?;
    }
    Ok(EventBody::RoleUpdated {
        role: *role,
        name: match name {
            Some(n) if *role != RoleId::EVERYONE => validate::name("name", n)?,
            Some(_) => return Err(DomainError::invalid("name", "@everyone cannot be renamed")),
            None => current.name.clone(),
        },
        permissions: permissions.unwrap_or(current.permissions),
    })
}

pub(super) fn reorder(ctx: &Ctx, order: &[RoleId]) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
    ctx.require(Permissions::MANAGE_ROLES)?;
    let now_set: BTreeSet<_> = guild.role_order.iter().collect();
    let new_set: BTreeSet<_> = order.iter().collect();
    if new_set != now_set || order.len() != guild.role_order.len() {
        return Err(DomainError::invalid("order", "must list every role except @everyone exactly once"));
    }
    if !ctx.is_owner() {
        let top = guild.top_position(ctx.actor);
        for (i, role) in order.iter().enumerate() {
            let (old, new) = (guild.position(role), i as u32 + 1);
            if old != new && (old >= top || new >= top) {
                return Err(DomainError::Forbidden(Refusal::RoleNotBelow));
            }
        }
    }
    Ok(EventBody::RolesReordered { order: order.to_vec() })
}

pub(super) fn delete(ctx: &Ctx, role: &RoleId) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MANAGE_ROLES)?;
    if *role == RoleId::EVERYONE {
        return Err(DomainError::invalid("role", "@everyone cannot be deleted"));
    }
    ctx.guild.role(role)?;
    ctx.above_role(role)?;
    Ok(EventBody::RoleDeleted { role: *role })
}

/// Gives `role` to `user` (`assign`) or takes it away.
pub(super) fn assign(
    ctx: &Ctx,
    assign: bool,
    user: &UserId,
    role: &RoleId,
    reason: &str,
) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
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
    Ok(if assign {
        EventBody::RoleAssigned { user: user.clone(), role: *role, reason }
    } else {
        EventBody::RoleUnassigned { user: user.clone(), role: *role, reason }
    })
}

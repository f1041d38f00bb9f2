//! Deciding reports: members file them against a message or a member; moderators take them
//! and resolve them.

use crate::body::{EventBody, Place, ReportAction, ReportTarget};
use crate::error::DomainError;
use crate::ids::{ReportId, UserId};
use crate::permissions::Permissions;
use crate::validate;

use super::checks::Ctx;
use super::state::Guild;

pub(super) fn file(
    ctx: &Ctx,
    report: &ReportId,
    target: &ReportTarget,
    reason: &str,
) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
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
    Ok(EventBody::ReportFiled {
        report: *report,
        target: target.clone(),
        reason: validate::text("reason", reason, 512)?,
    })
}

pub(super) fn assign(ctx: &Ctx, report: &ReportId, assignee: Option<&UserId>) -> Result<EventBody, DomainError> {
    let guild = ctx.guild;
    ctx.require(Permissions::MODERATE_MEMBERS)?;
    guild.open_report(report)?;
    if let Some(user) = assignee {
        guild.member(user)?;
        if !guild.guild_permissions(user, ctx.now).contains(Permissions::MODERATE_MEMBERS) {
            return Err(DomainError::invalid("assignee", format!("{user} cannot moderate (MODERATE_MEMBERS)")));
        }
    }
    Ok(EventBody::ReportAssigned { report: *report, assignee: assignee.cloned() })
}

pub(super) fn resolve(
    ctx: &Ctx,
    report: &ReportId,
    action: ReportAction,
    reason: &str,
) -> Result<EventBody, DomainError> {
    ctx.require(Permissions::MODERATE_MEMBERS)?;
    resolved(ctx.guild, report, action, reason)
}

/// The resolution itself, once the actor may resolve: shared with a hub operator's.
pub(super) fn resolved(
    guild: &Guild,
    report: &ReportId,
    action: ReportAction,
    reason: &str,
) -> Result<EventBody, DomainError> {
    guild.open_report(report)?;
    Ok(EventBody::ReportResolved { report: *report, action, reason: validate::reason(reason)? })
}

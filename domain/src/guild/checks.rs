//! What every guild decision checks, in one place: that the guild exists, lookups that turn
//! an unknown id into `NotFound`, and [`Ctx`], the actor's permissions (guild-wide or in a
//! channel or category), what they may grant, and where they stand in the role hierarchy.

use crate::body::Place;
use crate::error::{DomainError, Refusal};
use crate::ids::{CategoryId, ChannelId, GuildId, ReportId, RoleId, Timestamp, UserId};
use crate::permissions::{self, Overwrites, Permissions, Scope};

use super::state::{Category, Channel, Guild, Member, Report, Role};

impl Guild {
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

    pub(super) fn category(&self, id: &CategoryId) -> Result<&Category, DomainError> {
        self.categories.get(id).ok_or_else(|| DomainError::not_found("category", id))
    }

    pub(super) fn role(&self, id: &RoleId) -> Result<&Role, DomainError> {
        self.roles.get(id).ok_or_else(|| DomainError::not_found("role", id))
    }

    pub(super) fn member(&self, id: &UserId) -> Result<&Member, DomainError> {
        self.members.get(id).ok_or_else(|| DomainError::not_found("member", id))
    }

    /// A report that is still waiting for a decision.
    pub(super) fn open_report(&self, id: &ReportId) -> Result<&Report, DomainError> {
        let report = self.reports.get(id).ok_or_else(|| DomainError::not_found("report", id))?;
        if report.resolution.is_some() {
            return Err(DomainError::conflict("the report is already resolved"));
        }
        Ok(report)
    }
}

/// One decision's actor and their guild-wide permissions.
pub(super) struct Ctx<'a> {
    pub(super) guild: &'a Guild,
    pub(super) actor: &'a UserId,
    pub(super) now: Timestamp,
    pub(super) perms: Permissions,
}

impl Ctx<'_> {
    pub(super) fn is_owner(&self) -> bool {
        self.guild.is_owner(self.actor)
    }

    pub(super) fn is_admin(&self) -> bool {
        self.perms.contains(Permissions::ADMINISTRATOR)
    }

    pub(super) fn require(&self, needed: Permissions) -> Result<(), DomainError> {
        if self.perms.contains(needed) { Ok(()) } else { Err(self.refuse(needed)) }
    }

    /// Requires a permission in a channel or category; returns what the actor holds there.
    pub(super) fn require_in(&self, place: Place, needed: Permissions) -> Result<Permissions, DomainError> {
        let held = self
            .guild
            .permission_input(self.actor, Some(place), self.now)
            .map_or(Permissions::empty(), |i| permissions::compute(&i));
        if held.contains(needed) { Ok(held) } else { Err(self.refuse(needed)) }
    }

    /// Requires a permission in a channel not created yet, as it will be once created in
    /// `category` with no overwrites of its own; returns what the actor will hold there.
    pub(super) fn require_in_new_channel(
        &self,
        category: Option<CategoryId>,
        needed: Permissions,
    ) -> Result<Permissions, DomainError> {
        let none = Overwrites::new();
        let held = self.guild.permission_input(self.actor, category.map(Place::Category), self.now).map_or(
            Permissions::empty(),
            |mut input| {
                input.layers.push((Scope::Channel, &none));
                input.in_channel = true;
                permissions::compute(&input)
            },
        );
        if held.contains(needed) { Ok(held) } else { Err(self.refuse(needed)) }
    }

    fn refuse(&self, needed: Permissions) -> DomainError {
        match self.guild.timed_out_until(self.actor, self.now) {
            Some(until) => DomainError::TimedOut { until },
            None => DomainError::missing(needed),
        }
    }

    pub(super) fn owner_only(&self) -> Result<(), DomainError> {
        if self.is_owner() { Ok(()) } else { Err(DomainError::Forbidden(Refusal::OwnerOnly)) }
    }

    /// Nobody grants what they do not hold (the owner and administrators hold everything).
    pub(super) fn can_grant(&self, granted: Permissions) -> Result<(), DomainError> {
        let beyond = granted - self.perms;
        if beyond.is_empty() { Ok(()) } else { Err(DomainError::Forbidden(Refusal::CannotGrant(beyond))) }
    }

    /// The role must sit below the actor's highest role.
    pub(super) fn above_role(&self, role: &RoleId) -> Result<(), DomainError> {
        if self.is_owner() || self.guild.position(role) < self.guild.top_position(self.actor) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(Refusal::RoleNotBelow))
        }
    }

    /// The target's highest role must sit below the actor's; nobody acts on the owner or
    /// on themself.
    pub(super) fn above_member(&self, target: &UserId) -> Result<(), DomainError> {
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

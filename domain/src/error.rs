//! Every way the domain says no. Each refusal names what was wrong, so the API can tell
//! the user what to do instead.

use std::fmt;

// `IdError` is the ids' own error, defined beside them so `ids` needs nothing from here.
pub use crate::ids::IdError;
use crate::ids::{GuildId, ServerName, Timestamp, UserId};
use crate::permissions::Permissions;

/// A command refused by `decide`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("forbidden: {0}")]
    Forbidden(Refusal),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("slow mode is on: you can post again in {}", fmt_ms(*retry_after_ms))]
    SlowMode { retry_after_ms: u64 },
    #[error("you are timed out until {} ms since the epoch", until.as_millis())]
    TimedOut { until: Timestamp },
}

impl DomainError {
    pub(crate) fn missing(permission: Permissions) -> Self {
        Self::Forbidden(Refusal::Missing(permission))
    }

    pub(crate) fn not_found(what: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound { what, id: id.to_string() }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput { field, reason: reason.into() }
    }

    pub(crate) fn conflict(reason: impl Into<String>) -> Self {
        Self::Conflict(reason.into())
    }
}

/// Why an actor may not do what they asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The actor lacks this permission where they tried to use it.
    Missing(Permissions),
    /// The target's highest role is equal to or above the actor's.
    Hierarchy,
    /// The role is not below the actor's highest role.
    RoleNotBelow,
    /// The actor tried to grant permissions they do not hold themselves.
    CannotGrant(Permissions),
    /// Only the guild's owner may do this.
    OwnerOnly,
    /// The actor is not a member of the guild.
    NotMember,
    /// The actor is banned from the guild.
    Banned,
    /// Only the message's author may do this.
    NotAuthor,
    /// The channel is locked; members without MANAGE_CHANNELS cannot post.
    ChannelLocked,
    /// The guild is archived and read-only.
    Archived,
    /// Only a hub operator may do this.
    HubOperatorOnly,
    /// The service token's scopes do not cover this.
    ScopeTooNarrow,
    /// A bot acts in the guild it was made for and nowhere else, so it makes no guilds.
    BotCreatesNoGuilds,
    /// A service token has no person to own a guild; it makes guilds by provisioning them.
    ServiceCreatesNoGuilds,
    /// The hub lets only creators (and operators) create guilds.
    CreatorsOnly,
    /// The hub lets only its operators create guilds.
    OperatorsCreateGuilds,
    /// Provisioning needs a hub operator or a service token with the hub scope.
    ProvisionersOnly,
    /// This service token (named) is scoped to guilds; provisioning users and guilds needs
    /// the hub scope.
    HubScopeNeeded { token: String },
    /// Acting for a host application inside a guild needs a service token.
    ServiceTokenOnly,
    /// This service token (named) does not cover the guild.
    NotScopedTo { token: String, guild: GuildId },
    /// Sessions are never issued for hub operators.
    SessionForOperator(UserId),
    /// Sessions are issued only for users a host application provisioned.
    NotProvisioned(UserId),
    /// A purge reaches only messages its author posted inside the purge window of the ban
    /// the actor gave them.
    NotInPurge,
    /// The guild is owned by another hub, which decides and sequences its streams; this hub
    /// keeps a verified copy.
    OwnedElsewhere(ServerName),
    /// The voice channel holds its user limit already.
    ChannelFull { limit: u32 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(p) => write!(f, "you need the {} permission", p.names().join(" and ")),
            Self::Hierarchy => f.write_str("their highest role is not below yours"),
            Self::RoleNotBelow => f.write_str("that role is not below your highest role"),
            Self::CannotGrant(p) => {
                write!(f, "you cannot grant {}, which you do not hold", p.names().join(", "))
            }
            Self::OwnerOnly => f.write_str("only the guild owner can do this"),
            Self::NotMember => f.write_str("you are not a member of this guild"),
            Self::Banned => f.write_str("you are banned from this guild"),
            Self::NotAuthor => f.write_str("only the author of the message can do this"),
            Self::ChannelLocked => f.write_str("the channel is locked; only members with MANAGE_CHANNELS can post"),
            Self::NotInPurge => {
                f.write_str("only messages posted inside the purge window of a ban you gave can be purged")
            }
            Self::OwnedElsewhere(owner) => write!(
                f,
                "this guild is owned by {owner}, which decides what happens in it; this hub keeps a copy. Act in it on {owner}"
            ),
            Self::Archived => f.write_str("the guild or channel is archived and read-only"),
            Self::ChannelFull { limit } => write!(
                f,
                "the voice channel is full ({limit} of {limit}); wait for someone to leave, or ask a member with MOVE_MEMBERS"
            ),
            Self::HubOperatorOnly => {
                f.write_str("only a hub operator can do this (guild owners and admins cannot); ask one of the hub's operators")
            }
            Self::ScopeTooNarrow => f.write_str("the service token's scopes do not cover this"),
            Self::BotCreatesNoGuilds => {
                f.write_str("a bot acts only in the guild it was made for; it cannot create guilds")
            }
            Self::ServiceCreatesNoGuilds => f.write_str(
                "a service token creates guilds by provisioning them (ensureGuild), owned by the hub's service identity",
            ),
            Self::CreatorsOnly => {
                f.write_str("on this hub only creators may create guilds; ask a hub operator to make you one")
            }
            Self::OperatorsCreateGuilds => {
                f.write_str("on this hub only hub operators create guilds; ask one of them to create it")
            }
            Self::ProvisionersOnly => {
                f.write_str("only a hub operator or a service token with the hub scope can do this")
            }
            Self::HubScopeNeeded { token } => write!(
                f,
                "this needs a service token with the hub scope; the service token {token:?} is scoped to guilds"
            ),
            Self::ServiceTokenOnly => f.write_str(
                "this needs a service token whose scopes cover the guild; members use the guild's own mutations",
            ),
            Self::NotScopedTo { token, guild } => write!(
                f,
                "the service token {token:?} is not scoped to guild {guild}; use a token with the hub scope or one for this guild"
            ),
            Self::SessionForOperator(user) => write!(
                f,
                "{user} is a hub operator; sessions are never issued for operators, who log in themselves"
            ),
            Self::NotProvisioned(user) => write!(
                f,
                "sessions can be issued only for users provisioned with ensureUser; {user} is not one"
            ),
        }
    }
}

fn fmt_ms(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

//! What the hub allows outside its own commands: who creates guilds, who provisions users
//! and guilds, for whom a session may be issued, who acts for a host application inside a
//! guild, and who acts as an operator inside guilds.
//!
//! Each rule is a pure function of the hub as its events left it and of the actor, and
//! answers with a `Refusal` that says what is wrong and what to do. The API extracts the
//! actor, asks here and maps the answer; `decide` asks the same rules for the hub's own
//! commands, so a rule is written once.

use crate::error::{DomainError, Refusal};
use crate::ids::{GuildId, UserId};

use super::{Hub, HubActor, TokenScope};

/// Who may create guilds on this hub (the `api.guild_creation` setting: `anyone`,
/// `creators` or `operators`). Bots never do, whatever it says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuildCreation {
    #[default]
    Anyone,
    /// Users an operator granted (`hub.creator_granted`), and operators.
    Creators,
    Operators,
}

/// External ids under which single sign-on links a provider's subject to a user
/// (`oidc:<issuer> <subject>`). Such a user signed up themselves: no host application
/// provisioned them.
pub const SIGN_ON_PREFIX: &str = "oidc:";

impl Hub {
    /// Whether `actor` holds the hub's powers: the console, or an account the hub names an
    /// operator.
    pub fn is_operator(&self, actor: &HubActor) -> bool {
        actor == &HubActor::Console || actor.user().is_some_and(|u| self.operators.contains(u))
    }
}

/// Whether `actor` may create a guild of their own under `rule`.
pub fn may_create_guild(hub: &Hub, actor: &HubActor, rule: GuildCreation) -> Result<(), DomainError> {
    let refuse = |why| Err(DomainError::Forbidden(why));
    match actor {
        HubActor::Bot { .. } => return refuse(Refusal::BotCreatesNoGuilds),
        HubActor::Service { .. } => return refuse(Refusal::ServiceCreatesNoGuilds),
        HubActor::User(_) | HubActor::Console => {}
    }
    let operator = hub.is_operator(actor);
    match rule {
        GuildCreation::Anyone => Ok(()),
        GuildCreation::Creators if operator || actor.user().is_some_and(|u| hub.creators.contains(u)) => Ok(()),
        GuildCreation::Creators => refuse(Refusal::CreatorsOnly),
        GuildCreation::Operators if operator => Ok(()),
        GuildCreation::Operators => refuse(Refusal::OperatorsCreateGuilds),
    }
}

/// Whether `actor` may provision users and guilds by a host application's ids (and link
/// them on the hub): a service token with the hub scope, or an operator.
pub fn may_provision(hub: &Hub, actor: &HubActor) -> Result<(), DomainError> {
    match actor {
        HubActor::Service { scopes, .. } if scopes.contains(&TokenScope::Hub) => Ok(()),
        HubActor::Service { name, .. } => Err(DomainError::Forbidden(Refusal::HubScopeNeeded { token: name.clone() })),
        _ if hub.is_operator(actor) => Ok(()),
        _ => Err(DomainError::Forbidden(Refusal::ProvisionersOnly)),
    }
}

/// Whether `actor` may have a session issued for `user`, to hand to a host application's
/// frontend: a provisioner may, for users a host application provisioned and never for an
/// operator, so a service token is no way into someone else's account or into hub powers.
pub fn may_issue_session(hub: &Hub, actor: &HubActor, user: &UserId) -> Result<(), DomainError> {
    may_provision(hub, actor)?;
    if hub.operators.contains(user) {
        return Err(DomainError::Forbidden(Refusal::SessionForOperator(user.clone())));
    }
    let provisioned = hub.external_users.iter().any(|(ext, u)| u == user && !ext.starts_with(SIGN_ON_PREFIX));
    if !provisioned {
        return Err(DomainError::Forbidden(Refusal::NotProvisioned(user.clone())));
    }
    Ok(())
}

/// Whether `actor` may act for a host application inside `guild` (provision its channels
/// and roles, sync its members, archive it): a service token whose scopes cover the guild.
/// Nobody else, operators included: such acts are signed as the hub's service identity.
/// The hub itself is not asked: the token's scopes came from it when the token was checked.
pub fn may_provision_in(actor: &HubActor, guild: GuildId) -> Result<(), DomainError> {
    match actor {
        HubActor::Service { scopes, .. }
            if scopes.contains(&TokenScope::Hub) || scopes.contains(&TokenScope::Guild(guild)) =>
        {
            Ok(())
        }
        HubActor::Service { name, .. } => {
            Err(DomainError::Forbidden(Refusal::NotScopedTo { token: name.clone(), guild }))
        }
        HubActor::User(_) | HubActor::Bot { .. } | HubActor::Console => {
            Err(DomainError::Forbidden(Refusal::ServiceTokenOnly))
        }
    }
}

/// Whether `actor` may use an operator's powers inside guilds (archive any guild, resolve
/// any report, ban from the whole hub), manage the peer hubs it federates with, and see the
/// hub's own records (its log, its service tokens, its peers).
pub fn may_act_as_operator(hub: &Hub, actor: &HubActor) -> Result<(), DomainError> {
    if hub.is_operator(actor) { Ok(()) } else { Err(DomainError::Forbidden(Refusal::HubOperatorOnly)) }
}

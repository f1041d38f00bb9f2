//! The hub itself (`hub` stream): its operators, the service tokens host applications use,
//! the links from a host application's own ids to OpenGuild users, and the peer hubs an
//! operator allowed or denied.
//!
//! Hub operators act across guilds; guild owners and admins never gain hub powers, because
//! nothing in a guild's stream can grant them: only an operator (or, on a fresh hub, the
//! first account) appears here.
//!
//! `decide` rules on the hub's own commands; `policy` on what the hub allows elsewhere
//! (creating guilds, provisioning, issuing sessions, acting inside guilds).

use std::collections::{BTreeMap, BTreeSet};

pub mod policy;

// `TokenScope` is a value of hub events, so it lives with them in `body` (which must not
// depend on this module); it is re-exported here, where it has always been named.
pub use crate::body::TokenScope;
pub use policy::GuildCreation;

use crate::body::EventBody;
use crate::error::{DomainError, Refusal};
use crate::event::Event;
use crate::ids::{ChannelId, EventId, GuildId, ServerName, Timestamp, UserId};
use crate::validate;

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceToken {
    pub name: String,
    pub scopes: BTreeSet<TokenScope>,
    pub created_by: UserId,
    pub created_at: Timestamp,
}

/// The hub as its events left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hub {
    pub operators: BTreeSet<UserId>,
    /// Users an operator allowed to create guilds (when the hub restricts it to creators).
    pub creators: BTreeSet<UserId>,
    /// Live service tokens by the BLAKE3 hash of the token.
    pub service_tokens: BTreeMap<[u8; 32], ServiceToken>,
    /// A host application's external user id → the user it was provisioned as.
    pub external_users: BTreeMap<String, UserId>,
    /// External guild ids → guilds.
    pub external_guilds: BTreeMap<String, GuildId>,
    /// External channel ids → (guild, channel).
    pub external_channels: BTreeMap<String, (GuildId, ChannelId)>,
    /// Channel aliases (`#name:server`) → (guild, channel); unique on the hub.
    pub aliases: BTreeMap<String, (GuildId, ChannelId)>,
    /// Users banned from the whole hub, with the reason.
    pub banned: BTreeMap<UserId, String>,
    /// Peer hubs by the latest `hub.peer_allowed` or `hub.peer_denied` about each. A name
    /// here overrides the configuration's peers; a name not here is as configured.
    pub peers: BTreeMap<ServerName, PeerRule>,
    pub version: u64,
    pub head: Option<EventId>,
}

/// What the hub stream last said about a peer hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRule {
    /// Allowed, reached at this base URL.
    Allowed {
        url: String,
    },
    Denied,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HubCommand {
    /// Makes `user` an operator. On a hub without operators, the first account may claim it.
    GrantOperator {
        user: UserId,
    },
    RevokeOperator {
        user: UserId,
    },
    /// Allows `user` to create guilds on a hub where only creators may.
    GrantCreator {
        user: UserId,
    },
    /// Records, in the hub's own log, an operator's act inside a guild (its event there).
    RecordOperatorAct {
        guild: GuildId,
        event: EventId,
        kind: String,
        reason: String,
    },
    /// Bans a user from the whole hub: no session of theirs works any more.
    BanUser {
        user: UserId,
        reason: String,
    },
    CreateServiceToken {
        token_hash: [u8; 32],
        name: String,
        scopes: BTreeSet<TokenScope>,
    },
    RevokeServiceToken {
        token_hash: [u8; 32],
    },
    /// Records that a host application's `external_id` is `user` (once, forever).
    LinkExternalUser {
        external_id: String,
        user: UserId,
    },
    LinkExternalGuild {
        external_id: String,
        guild: GuildId,
    },
    /// Records an external channel id and, optionally, the channel's hub-wide alias.
    LinkExternalChannel {
        external_id: String,
        guild: GuildId,
        channel: ChannelId,
        alias: Option<String>,
    },
    /// Federates with the hub `name`, reached at `url` (an operator's act, at run time).
    AllowPeer {
        name: ServerName,
        url: String,
    },
    /// Stops federating with the hub `name`, even if the configuration lists it.
    DenyPeer {
        name: ServerName,
    },
}

/// Who is acting on the hub.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HubActor {
    User(UserId),
    /// A bot: an account made for one guild, which it never leaves.
    Bot {
        user: UserId,
        guild: GuildId,
    },
    /// A service token (its name, for messages) with these scopes.
    Service {
        name: String,
        scopes: BTreeSet<TokenScope>,
    },
    /// The machine's administrator: the `openguild` command line, run with the data
    /// directory and its server key. May do what an operator may.
    Console,
}

impl HubActor {
    /// The account acting, for a person or a bot.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(user) | Self::Bot { user, .. } => Some(user),
            Self::Service { .. } | Self::Console => None,
        }
    }
}

const MAX_EXTERNAL_ID: usize = 256;

pub fn decide(hub: &Hub, actor: &HubActor, cmd: &HubCommand) -> Result<Vec<EventBody>, DomainError> {
    use HubCommand as C;
    let operator = hub.is_operator(actor);
    let operators_only = || DomainError::Forbidden(Refusal::HubOperatorOnly);
    let body = match cmd {
        C::GrantOperator { user } => {
            let claiming_fresh_hub = hub.operators.is_empty() && actor.user() == Some(user);
            if !operator && !claiming_fresh_hub {
                return Err(operators_only());
            }
            if hub.operators.contains(user) {
                return Err(DomainError::conflict(format!("{user} is already a hub operator")));
            }
            EventBody::OperatorGranted { user: user.clone() }
        }
        C::RevokeOperator { user } => {
            if !operator {
                return Err(operators_only());
            }
            if !hub.operators.contains(user) {
                return Err(DomainError::not_found("hub operator", user));
            }
            if hub.operators.len() == 1 {
                return Err(DomainError::conflict("a hub keeps at least one operator; grant another first"));
            }
            EventBody::OperatorRevoked { user: user.clone() }
        }
        C::RecordOperatorAct { guild, event, kind, reason } => {
            if !operator {
                return Err(operators_only());
            }
            EventBody::OperatorActed { guild: *guild, event: *event, kind: kind.clone(), reason: reason.clone() }
        }
        C::BanUser { user, reason } => {
            if !operator {
                return Err(operators_only());
            }
            if hub.operators.contains(user) {
                return Err(DomainError::conflict("revoke their operator rights before banning an operator"));
            }
            if hub.banned.contains_key(user) {
                return Err(DomainError::conflict(format!("{user} is already banned from the hub")));
            }
            EventBody::UserBanned { user: user.clone(), reason: validate::reason(reason)? }
        }
        C::GrantCreator { user } => {
            if !operator {
                return Err(operators_only());
            }
            EventBody::CreatorGranted { user: user.clone() }
        }
        C::CreateServiceToken { token_hash, name, scopes } => {
            if !operator {
                return Err(operators_only());
            }
            if scopes.is_empty() {
                return Err(DomainError::invalid("scopes", "give `hub` or at least one guild"));
            }
            EventBody::ServiceTokenCreated {
                token_hash: *token_hash,
                name: validate::name("name", name)?,
                scopes: scopes.iter().cloned().collect(),
            }
        }
        C::RevokeServiceToken { token_hash } => {
            if !operator {
                return Err(operators_only());
            }
            if !hub.service_tokens.contains_key(token_hash) {
                return Err(DomainError::not_found("service token", "with that hash"));
            }
            EventBody::ServiceTokenRevoked { token_hash: *token_hash }
        }
        C::LinkExternalUser { external_id, user } => {
            policy::may_provision(hub, actor)?;
            let external_id = validate::text("externalId", external_id, MAX_EXTERNAL_ID)?;
            // Sign-on subjects are linked by the hub itself when someone signs in; a host
            // application naming one in advance would take over that person's account.
            if external_id.starts_with(policy::SIGN_ON_PREFIX) && *actor != HubActor::Console {
                return Err(DomainError::invalid(
                    "externalId",
                    format!(
                        "ids starting with {:?} are reserved for single sign-on; choose another",
                        policy::SIGN_ON_PREFIX
                    ),
                ));
            }
            if let Some(existing) = hub.external_users.get(&external_id) {
                return Err(DomainError::conflict(format!("external id {external_id:?} is already {existing}")));
            }
            EventBody::ExternalUserLinked { external_id, user: user.clone() }
        }
        C::LinkExternalGuild { external_id, guild } => {
            policy::may_provision(hub, actor)?;
            let external_id = validate::text("externalId", external_id, MAX_EXTERNAL_ID)?;
            if let Some(existing) = hub.external_guilds.get(&external_id) {
                return Err(DomainError::conflict(format!("external id {external_id:?} is already guild {existing}")));
            }
            EventBody::ExternalGuildLinked { external_id, guild: *guild }
        }
        C::LinkExternalChannel { external_id, guild, channel, alias } => {
            let in_scope = match actor {
                HubActor::Service { scopes, .. } => {
                    scopes.contains(&TokenScope::Hub) || scopes.contains(&TokenScope::Guild(*guild))
                }
                _ => operator,
            };
            if !in_scope {
                return Err(DomainError::Forbidden(Refusal::ScopeTooNarrow));
            }
            let external_id = validate::text("externalId", external_id, MAX_EXTERNAL_ID)?;
            if hub.external_channels.contains_key(&external_id) {
                return Err(DomainError::conflict(format!("external id {external_id:?} is already a channel")));
            }
            if let Some(a) = alias {
                validate_alias(a)?;
                if hub.aliases.contains_key(a) {
                    return Err(DomainError::conflict(format!("the alias {a} is taken on this hub")));
                }
            }
            EventBody::ExternalChannelLinked { external_id, guild: *guild, channel: *channel, alias: alias.clone() }
        }
        C::AllowPeer { name, url } => {
            if !operator {
                return Err(operators_only());
            }
            let url = validate::peer_url("url", url)?;
            if hub.peers.get(name) == Some(&PeerRule::Allowed { url: url.clone() }) {
                return Err(DomainError::conflict(format!("{name} is already allowed at {url}")));
            }
            EventBody::PeerAllowed { name: name.clone(), url }
        }
        C::DenyPeer { name } => {
            if !operator {
                return Err(operators_only());
            }
            if hub.peers.get(name) == Some(&PeerRule::Denied) {
                return Err(DomainError::conflict(format!("{name} is already denied")));
            }
            EventBody::PeerDenied { name: name.clone() }
        }
    };
    Ok(vec![body])
}

/// A channel alias: `#name:server`, the name 1 to 64 of `a-z0-9._=-`.
pub fn validate_alias(alias: &str) -> Result<(), DomainError> {
    let bad =
        || DomainError::invalid("alias", format!("{alias:?} must look like #name:server (name: a-z 0-9 . _ = -)"));
    let rest = alias.strip_prefix('#').ok_or_else(bad)?;
    let (name, server) = rest.split_once(':').ok_or_else(bad)?;
    crate::ids::validate_handle(name).map_err(|_| bad())?;
    server.parse::<crate::ids::ServerName>().map_err(|_| bad())?;
    Ok(())
}

pub fn evolve(mut hub: Hub, event: &Event) -> Hub {
    hub.version = event.core.seq;
    hub.head = Some(event.id);
    match event.content() {
        EventBody::OperatorGranted { user } => {
            hub.operators.insert(user.clone());
        }
        EventBody::OperatorRevoked { user } => {
            hub.operators.remove(user);
        }
        EventBody::CreatorGranted { user } => {
            hub.creators.insert(user.clone());
        }
        EventBody::UserBanned { user, reason } => {
            hub.banned.insert(user.clone(), reason.clone());
        }
        EventBody::ServiceTokenCreated { token_hash, name, scopes } => {
            hub.service_tokens.insert(
                *token_hash,
                ServiceToken {
                    name: name.clone(),
                    scopes: scopes.iter().cloned().collect(),
                    created_by: event.core.sender.clone(),
                    created_at: event.core.ts,
                },
            );
        }
        EventBody::ServiceTokenRevoked { token_hash } => {
            hub.service_tokens.remove(token_hash);
        }
        EventBody::ExternalUserLinked { external_id, user } => {
            hub.external_users.insert(external_id.clone(), user.clone());
        }
        EventBody::ExternalGuildLinked { external_id, guild } => {
            hub.external_guilds.insert(external_id.clone(), *guild);
        }
        EventBody::ExternalChannelLinked { external_id, guild, channel, alias } => {
            hub.external_channels.insert(external_id.clone(), (*guild, *channel));
            if let Some(a) = alias {
                hub.aliases.insert(a.clone(), (*guild, *channel));
            }
        }
        EventBody::PeerAllowed { name, url } => {
            hub.peers.insert(name.clone(), PeerRule::Allowed { url: url.clone() });
        }
        EventBody::PeerDenied { name } => {
            hub.peers.insert(name.clone(), PeerRule::Denied);
        }
        _ => {}
    }
    hub
}

impl Hub {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Hub {
        events.into_iter().fold(Hub::default(), evolve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(h: &str) -> UserId {
        format!("@{h}:hub.test").parse().unwrap()
    }

    fn apply(hub: Hub, bodies: Vec<EventBody>, sender: &UserId) -> Hub {
        bodies.into_iter().fold(hub, |h, body| {
            let key =
                crate::event::ServerKey::from_seed("hub.test".parse().unwrap(), "ed25519:k".parse().unwrap(), [1; 32]);
            let unsigned = crate::event::UnsignedEvent {
                stream: crate::ids::StreamId::Hub,
                seq: h.version + 1,
                prev: h.head.into_iter().collect(),
                auth: vec![],
                sender: sender.clone(),
                ts: Timestamp::from_millis(1_795_000_000_000).unwrap(),
                body,
            };
            evolve(h, &crate::event::sign(unsigned, &key).unwrap().event)
        })
    }

    #[test]
    fn the_first_account_claims_a_fresh_hub_and_only_operators_act_after() {
        let (root, other) = (user("root"), user("other"));
        let claim = |u: &UserId| HubCommand::GrantOperator { user: u.clone() };
        // Nobody may grant someone else on a fresh hub; one may claim it for oneself.
        assert!(decide(&Hub::default(), &HubActor::User(other.clone()), &claim(&root)).is_err());
        let hub = apply(
            Hub::default(),
            decide(&Hub::default(), &HubActor::User(root.clone()), &claim(&root)).unwrap(),
            &root,
        );
        assert!(hub.operators.contains(&root));
        let refused = decide(&hub, &HubActor::User(other.clone()), &claim(&other)).unwrap_err();
        assert_eq!(refused, DomainError::Forbidden(Refusal::HubOperatorOnly));
        // The last operator stays.
        let last = decide(&hub, &HubActor::User(root.clone()), &HubCommand::RevokeOperator { user: root.clone() });
        assert!(matches!(last, Err(DomainError::Conflict(_))));
        // Tokens need an operator and a scope.
        let token = |scopes: BTreeSet<TokenScope>| HubCommand::CreateServiceToken {
            token_hash: [7; 32],
            name: "app".into(),
            scopes,
        };
        let hub_scope: BTreeSet<_> = [TokenScope::Hub].into();
        assert!(decide(&hub, &HubActor::User(other.clone()), &token(hub_scope.clone())).is_err());
        assert!(matches!(
            decide(&hub, &HubActor::User(root.clone()), &token(BTreeSet::new())),
            Err(DomainError::InvalidInput { .. })
        ));
        let hub =
            apply(hub.clone(), decide(&hub, &HubActor::User(root.clone()), &token(hub_scope.clone())).unwrap(), &root);
        assert_eq!(hub.service_tokens.len(), 1);
        // A hub-scoped service links external ids once; a guild-scoped one cannot.
        let link = HubCommand::LinkExternalUser { external_id: "crm-1".into(), user: other.clone() };
        let service = |scopes: &BTreeSet<TokenScope>| HubActor::Service { name: "app".into(), scopes: scopes.clone() };
        let guild_only: BTreeSet<_> = [TokenScope::Guild(crate::ids::GuildId::from_bytes([2; 16]))].into();
        assert_eq!(
            decide(&hub, &service(&guild_only), &link).unwrap_err(),
            DomainError::Forbidden(Refusal::HubScopeNeeded { token: "app".into() })
        );
        let hub = apply(hub.clone(), decide(&hub, &service(&hub_scope), &link).unwrap(), &root);
        assert!(matches!(decide(&hub, &service(&hub_scope), &link), Err(DomainError::Conflict(_))));
        assert_eq!(hub.external_users.get("crm-1"), Some(&other));
        // A sign-on subject is the hub's own to link, never a service's or an operator's.
        let claim = HubCommand::LinkExternalUser {
            external_id: format!("{}https://id.example sub-1", policy::SIGN_ON_PREFIX),
            user: other.clone(),
        };
        for actor in [service(&hub_scope), HubActor::User(root.clone())] {
            assert!(matches!(decide(&hub, &actor, &claim), Err(DomainError::InvalidInput { .. })), "{actor:?}");
        }
        assert!(decide(&hub, &HubActor::Console, &claim).is_ok());
    }
}

//! Hub-wide acts: operators, service tokens for host applications, provisioning (users by a
//! host application's own ids, and sessions handed to its frontend), and the peer hubs the
//! hub federates with.

use std::collections::BTreeSet;

use async_graphql::{Context, ID, Object, SimpleObject};
use openguild_domain::account::AccountCommand;
use openguild_domain::hub::{Hub, HubActor, HubCommand, TokenScope, policy};
use openguild_domain::{ChannelId, DomainError, GuildId, Refusal, ReportId, RoleId, ServerName, UserId};

use super::{Id, Session, User, api, now};
use crate::Api;
use crate::auth::{Service, Viewer, new_service_token, service_token_id};
use crate::errors::{ApiError, Res};

/// A service token as listed; `token` is only present in the answer that created it.
#[derive(SimpleObject)]
pub struct ServiceToken {
    /// A short public id (for revoking), not the secret.
    pub id: String,
    pub name: String,
    /// Whether it reaches the whole hub (else only `guildIds`).
    pub hub: bool,
    pub guild_ids: Vec<ID>,
    /// The secret: send it as `Authorization: Bearer <token>`. Shown once.
    pub token: Option<String>,
    /// When it was last used (on the node answering; `null`: not since that node started).
    pub last_used_at: Option<super::DateTime>,
    pub created_at: Option<super::DateTime>,
}

/// Where a peer's entry on the allowlist comes from.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    /// `[federation] peers` or `OPENGUILD_FEDERATION_PEERS`.
    Config,
    /// An operator's `allowPeer` or `denyPeer` (or `openguild federation allow|deny`): a
    /// signed event on the hub stream, which overrides the configuration.
    HubEvent,
}

/// A peer hub on the allowlist, allowed or denied.
#[derive(SimpleObject)]
pub struct FederationPeer {
    /// Its server name, as in its users' ids.
    pub name: String,
    /// Where it is reached (`null`: a configured peer that only pulls).
    pub url: Option<String>,
    pub source: PeerSource,
    /// Whether this hub federates with it now.
    pub allowed: bool,
}

impl From<openguild_federation::peers::Listed> for FederationPeer {
    fn from(l: openguild_federation::peers::Listed) -> Self {
        FederationPeer {
            name: l.peer.name.to_string(),
            url: l.peer.url,
            source: match l.source {
                openguild_federation::peers::Source::Config => PeerSource::Config,
                openguild_federation::peers::Source::HubEvent => PeerSource::HubEvent,
            },
            allowed: l.allowed,
        }
    }
}

fn listed(hash: &[u8; 32], name: &str, scopes: &BTreeSet<TokenScope>, token: Option<String>) -> ServiceToken {
    ServiceToken {
        id: service_token_id(hash),
        name: name.to_owned(),
        hub: scopes.contains(&TokenScope::Hub),
        guild_ids: scopes
            .iter()
            .filter_map(|s| match s {
                TokenScope::Guild(g) => Some(ID(g.to_string())),
                TokenScope::Hub => None,
            })
            .collect(),
        token,
        last_used_at: None,
        created_at: None,
    }
}

impl Api {
    /// Who acts on the hub, and who signs for it: a person (a user or a bot), or a service
    /// token (signed as the hub's `@_services` identity). Nobody at all must log in.
    fn hub_actor(&self, ctx: &Context<'_>) -> Result<(UserId, HubActor), ApiError> {
        if let Some(s) = ctx.data_opt::<Service>() {
            let sender = self.hub_identity("_services")?;
            return Ok((sender, HubActor::Service { name: s.name.clone(), scopes: s.scopes.clone() }));
        }
        person(ctx)
    }

    /// Asks one of the hub's rules (`hub::policy`) of the hub as this node knows it.
    pub(crate) async fn hub_allows(&self, rule: impl FnOnce(&Hub) -> Result<(), DomainError>) -> Result<(), ApiError> {
        let hub = self.commands.hub_cell().await?;
        let hub = hub.lock().await;
        rule(&hub).map_err(ApiError::from)
    }

    /// The user a host application knows as `external_id`: made with `handle` the first
    /// time (no password), the same user ever after. A taken handle is refused, never taken
    /// over; a racing call for the same external id gets the user that linked first.
    async fn ensure_user(
        &self,
        sender: &UserId,
        actor: &HubActor,
        external_id: String,
        handle: &str,
        display_name: Option<String>,
    ) -> Result<UserId, ApiError> {
        if let Some(user) = self.linked_user(&external_id).await? {
            return Ok(user);
        }
        let user = self.local_user(handle)?;
        let register = AccountCommand::Register {
            display_name: display_name.unwrap_or_else(|| handle.to_owned()),
            password: None,
            bot_of: None,
        };
        if let Err(e) = self.commands.account(&user, &register, now()).await {
            return self.linked_user(&external_id).await?.ok_or_else(|| e.into());
        }
        let link = HubCommand::LinkExternalUser { external_id, user: user.clone() };
        self.commands.hub(sender, actor, &link, now()).await?;
        Ok(user)
    }

    pub(crate) async fn linked_user(&self, external_id: &str) -> Result<Option<UserId>, ApiError> {
        Ok(self.commands.hub_cell().await?.lock().await.external_users.get(external_id).cloned())
    }

    /// The caller, if the hub lets them provision users and guilds (`policy::may_provision`).
    pub(crate) async fn provisioner(&self, ctx: &Context<'_>) -> Result<(UserId, HubActor), ApiError> {
        let (sender, actor) = self.hub_actor(ctx)?;
        self.hub_allows(|hub| policy::may_provision(hub, &actor)).await?;
        Ok((sender, actor))
    }

    /// Allows or denies a peer (`AllowPeer`, `DenyPeer`) for the caller, if the hub lets
    /// them act as an operator: the peer as listed after.
    async fn set_peer(
        &self,
        ctx: &Context<'_>,
        name: &str,
        cmd: impl FnOnce(ServerName) -> HubCommand,
    ) -> Result<FederationPeer, ApiError> {
        // The caller before the arguments: one who may not ask is refused, whatever they say.
        let (sender, actor) = self.hub_actor(ctx)?;
        self.hub_allows(|hub| policy::may_act_as_operator(hub, &actor)).await?;
        let name: ServerName = name
            .trim()
            .parse()
            .map_err(|e: openguild_domain::IdError| ApiError::new("INVALID_INPUT", e.to_string()))?;
        self.commands.hub(&sender, &actor, &cmd(name.clone()), now()).await?;
        let listed = self.listed_peers().await?.into_iter().find(|l| l.peer.name == name);
        listed.map(FederationPeer::from).ok_or_else(|| ApiError::internal(format!("{name} is not listed after")))
    }
}

/// The person calling, as the hub sees them: a user, or a bot with its guild. A service
/// token is no person, so it must log in as one, as must nobody at all.
pub(crate) fn person(ctx: &Context<'_>) -> Result<(UserId, HubActor), ApiError> {
    let v = ctx.data_opt::<Viewer>().ok_or_else(ApiError::login_required)?;
    let actor = match v.bot_of {
        Some(guild) => HubActor::Bot { user: v.user.clone(), guild },
        None => HubActor::User(v.user.clone()),
    };
    Ok((v.user.clone(), actor))
}

#[derive(Default)]
pub struct HubQuery;

#[Object]
impl HubQuery {
    /// The hub's operators.
    async fn hub_operators(&self, ctx: &Context<'_>) -> Res<Vec<User>> {
        let api = api(ctx);
        api.hub_actor(ctx)?;
        Ok(api
            .commands
            .hub_cell()
            .await
            .map_err(ApiError::from)?
            .lock()
            .await
            .operators
            .iter()
            .cloned()
            .map(User)
            .collect())
    }

    /// The peer hubs this hub federates with, or was told not to (hub operators only): the
    /// configured ones, overridden by operators' allows and denies on the hub stream, in
    /// name order.
    async fn federation_peers(&self, ctx: &Context<'_>) -> Res<Vec<FederationPeer>> {
        let api = api(ctx);
        let (_, actor) = api.hub_actor(ctx)?;
        api.hub_allows(|hub| policy::may_act_as_operator(hub, &actor)).await?;
        Ok(api.listed_peers().await?.into_iter().map(FederationPeer::from).collect())
    }

    /// Live service tokens (hub operators only); secrets are never shown again.
    async fn service_tokens(&self, ctx: &Context<'_>) -> Res<Vec<ServiceToken>> {
        let api = api(ctx);
        let (_, actor) = api.hub_actor(ctx)?;
        api.hub_allows(|hub| policy::may_act_as_operator(hub, &actor)).await?;
        let hub = api.commands.hub_cell().await.map_err(ApiError::from)?;
        let hub = hub.lock().await;
        let used = api.token_last_used.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(hub
            .service_tokens
            .iter()
            .map(|(h, t)| {
                let mut row = listed(h, &t.name, &t.scopes, None);
                row.last_used_at = used.get(h).copied().map(super::DateTime);
                row.created_at = Some(t.created_at.into());
                row
            })
            .collect())
    }
}

#[derive(Default)]
pub struct HubMutation;

#[derive(async_graphql::InputObject)]
pub struct BackfillUser {
    pub external_id: String,
    pub handle: String,
    pub display_name: Option<String>,
}

/// One line of a backfill: the user, or why there is none.
#[derive(SimpleObject)]
pub struct BackfillResult {
    pub external_id: String,
    pub user_id: Option<ID>,
    pub error: Option<String>,
}

#[Object]
impl HubMutation {
    /// Makes a user a hub operator (hub operators only).
    async fn grant_operator(&self, ctx: &Context<'_>, user_id: Id<UserId>) -> Res<bool> {
        let api = api(ctx);
        let (sender, actor) = api.hub_actor(ctx)?;
        let cmd = HubCommand::GrantOperator { user: user_id.0 };
        api.commands.hub(&sender, &actor, &cmd, now()).await.map_err(ApiError::from)?;
        Ok(true)
    }

    /// Federates with the hub `name`, reached at `url` (`https://…`; `http://` only to
    /// loopback), from now on and without a restart (hub operators only). Recorded as a
    /// signed `hub.peer_allowed` event on the hub stream, which overrides the configuration,
    /// an earlier deny included.
    async fn allow_peer(&self, ctx: &Context<'_>, name: String, url: String) -> Res<FederationPeer> {
        Ok(api(ctx).set_peer(ctx, &name, |name| HubCommand::AllowPeer { name, url }).await?)
    }

    /// Stops federating with the hub `name` at once, even if the configuration lists it (hub
    /// operators only): its requests are refused and nothing more is sent to it. Recorded as
    /// a signed `hub.peer_denied` event on the hub stream.
    async fn deny_peer(&self, ctx: &Context<'_>, name: String) -> Res<FederationPeer> {
        Ok(api(ctx).set_peer(ctx, &name, |name| HubCommand::DenyPeer { name }).await?)
    }

    /// Creates a service token for a host application, for the whole hub or named guilds
    /// (hub operators only). The token is in this answer and nowhere else.
    async fn create_service_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        hub: Option<bool>,
        guild_ids: Option<Vec<Id<GuildId>>>,
    ) -> Res<ServiceToken> {
        let api = api(ctx);
        let (sender, actor) = api.hub_actor(ctx)?;
        let mut scopes = BTreeSet::new();
        if hub.unwrap_or(false) {
            scopes.insert(TokenScope::Hub);
        }
        for g in guild_ids.into_iter().flatten() {
            scopes.insert(TokenScope::Guild(g.0));
        }
        let (token, token_hash) = new_service_token();
        let cmd = HubCommand::CreateServiceToken { token_hash, name: name.clone(), scopes: scopes.clone() };
        api.commands.hub(&sender, &actor, &cmd, now()).await.map_err(ApiError::from)?;
        Ok(listed(&token_hash, &name, &scopes, Some(token)))
    }

    /// Revokes a service token by its id; it is refused from the next request on.
    async fn revoke_service_token(&self, ctx: &Context<'_>, id: String) -> Res<bool> {
        let api = api(ctx);
        let (sender, actor) = api.hub_actor(ctx)?;
        let hash = {
            let hub = api.commands.hub_cell().await.map_err(ApiError::from)?;
            let hub = hub.lock().await;
            hub.service_tokens.keys().find(|h| service_token_id(h) == id).copied()
        };
        let token_hash = hash.ok_or_else(|| ApiError::not_found(format!("no service token with id {id}")))?;
        api.commands
            .hub(&sender, &actor, &HubCommand::RevokeServiceToken { token_hash }, now())
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// The user a host application knows as `externalId`: created (with `handle`) the first
    /// time, the same user ever after. Needs a hub-scoped service token or an operator.
    async fn ensure_user(
        &self,
        ctx: &Context<'_>,
        external_id: String,
        handle: String,
        display_name: Option<String>,
    ) -> Res<User> {
        let api = api(ctx);
        let (sender, actor) = api.provisioner(ctx).await?;
        Ok(User(api.ensure_user(&sender, &actor, external_id, &handle, display_name).await?))
    }

    /// Finishes a first single sign-on: the handle the person picked (unique on the hub).
    async fn complete_signup(&self, ctx: &Context<'_>, signup_token: String, handle: String) -> Res<Session> {
        let (token, user) = api(ctx).complete_signup(&signup_token, &handle).await?;
        Ok(Session { token, user: User(user) })
    }

    /// `ensureUser` for many at once: creates what is missing and returns the mapping for all,
    /// in the order given. One that cannot be made (a taken handle) is reported in place and
    /// does not stop the others.
    async fn backfill_users(&self, ctx: &Context<'_>, users: Vec<BackfillUser>) -> Res<Vec<BackfillResult>> {
        let api = api(ctx);
        let (sender, actor) = api.provisioner(ctx).await?;
        if users.len() > 1000 {
            return Err(ApiError::invalid("users", "at most 1,000 per call; send the rest in another").into());
        }
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let made = api.ensure_user(&sender, &actor, u.external_id.clone(), &u.handle, u.display_name).await;
            out.push(match made {
                Ok(user) => {
                    BackfillResult { external_id: u.external_id, user_id: Some(ID(user.to_string())), error: None }
                }
                Err(e) => BackfillResult { external_id: u.external_id, user_id: None, error: Some(e.message) },
            });
        }
        Ok(out)
    }

    /// A session for `userId`, for a host application to hand to its own frontend (hub-scoped
    /// service tokens and operators only).
    async fn issue_user_session(&self, ctx: &Context<'_>, user_id: Id<UserId>) -> Res<Session> {
        let api = api(ctx);
        // The caller before the argument: one who may not ask is refused, whatever the id.
        let (_, actor) = api.provisioner(ctx).await?;
        let user: UserId = user_id.0;
        api.hub_allows(|hub| policy::may_issue_session(hub, &actor, &user)).await?;
        let token = api.issue_session(&user, now()).await?;
        Ok(Session { token, user: User(user) })
    }
}

/// A bot just made: its user and its token (shown once).
#[derive(SimpleObject)]
pub struct BotCreated {
    pub user: User,
    pub token: String,
}

#[derive(Default)]
pub struct BotMutation;

#[Object]
impl BotMutation {
    /// Allows a user to create guilds on a hub where only creators may (operators only).
    async fn grant_creator(&self, ctx: &Context<'_>, user_id: Id<UserId>) -> Res<bool> {
        let api = api(ctx);
        let (sender, actor) = api.hub_actor(ctx)?;
        let cmd = HubCommand::GrantCreator { user: user_id.0 };
        api.commands.hub(&sender, &actor, &cmd, now()).await.map_err(ApiError::from)?;
        Ok(true)
    }

    /// Makes a bot for a guild (needs MANAGE_GUILD there): an account that is a member of
    /// this guild only and can never join another, and its token, shown once.
    async fn create_bot(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        handle: String,
        display_name: Option<String>,
    ) -> Res<BotCreated> {
        let api = api(ctx);
        let viewer = ctx.data_opt::<Viewer>().ok_or_else(ApiError::login_required)?.clone();
        if viewer.bot_of.is_some() {
            return Err(ApiError::forbidden("bots cannot make bots").into());
        }
        let guild: GuildId = guild_id.0;
        api.require(&viewer.user, guild, openguild_domain::Permissions::MANAGE_GUILD, "making a bot").await?;
        let bot = api.local_user(&handle)?;
        let register = AccountCommand::Register {
            display_name: display_name.unwrap_or_else(|| handle.clone()),
            password: None,
            bot_of: Some(guild),
        };
        api.commands.account(&bot, &register, now()).await.map_err(ApiError::from)?;
        let add = openguild_domain::guild::GuildCommand::AddMember { user: bot.clone() };
        let done = api.commands.guild(&viewer.user, guild, &add, now()).await.map_err(ApiError::from)?;
        api.wrote(&viewer.user, done.position);
        let token = api.issue_session(&bot, now()).await?;
        Ok(BotCreated { user: User(bot), token })
    }

    /// Revokes every token of a bot of this guild (needs MANAGE_GUILD there).
    async fn revoke_bot_tokens(&self, ctx: &Context<'_>, guild_id: Id<GuildId>, bot_id: Id<UserId>) -> Res<bool> {
        let api = api(ctx);
        let viewer = ctx.data_opt::<Viewer>().ok_or_else(ApiError::login_required)?;
        let guild: GuildId = guild_id.0;
        api.require(&viewer.user, guild, openguild_domain::Permissions::MANAGE_GUILD, "revoking a bot's tokens")
            .await?;
        let bot: UserId = bot_id.0;
        let cell = api.commands.account_cell(&bot).await.map_err(ApiError::from)?;
        if cell.lock().await.bot_of != Some(guild) {
            return Err(ApiError::not_found(format!("{bot} is not a bot of this guild")).into());
        }
        api.commands.account(&bot, &AccountCommand::RevokeAllSessions, now()).await.map_err(ApiError::from)?;
        Ok(true)
    }
}

/// A guild made by provisioning.
#[derive(SimpleObject)]
pub struct ProvisionedGuild {
    pub id: ID,
    pub name: String,
}

/// A channel made by provisioning, or found by its alias.
#[derive(SimpleObject)]
pub struct ProvisionedChannel {
    pub id: ID,
    pub guild_id: ID,
    pub name: String,
    pub alias: Option<String>,
}

impl Api {
    /// The hub's identity for what service tokens do inside guilds.
    fn services_user(&self) -> Result<UserId, ApiError> {
        self.hub_identity("_services")
    }

    /// Whether the caller may act for a host application in `guild`
    /// (`policy::may_provision_in`). Nobody at all is told what a person is told: this needs
    /// a service token (FORBIDDEN, not a login).
    fn service_for(&self, ctx: &Context<'_>, guild: GuildId) -> Result<(), ApiError> {
        if ctx.data_opt::<Service>().is_none() && ctx.data_opt::<Viewer>().is_none() {
            return Err(DomainError::Forbidden(Refusal::ServiceTokenOnly).into());
        }
        let (_, actor) = self.hub_actor(ctx)?;
        policy::may_provision_in(&actor, guild).map_err(ApiError::from)
    }
}

#[derive(Default)]
pub struct ProvisionMutation;

// GraphQL arguments are named; the count the lint sees is the resolver's.
#[allow(clippy::too_many_arguments)]
#[Object]
impl ProvisionMutation {
    /// The guild a host application knows as `externalId`: created the first time (owned by
    /// the hub's service identity, `@_services`), the same guild ever after. Needs a
    /// hub-scoped service token.
    async fn ensure_guild(&self, ctx: &Context<'_>, external_id: String, name: String) -> Res<ProvisionedGuild> {
        let api = api(ctx);
        let (sender, actor) = api.provisioner(ctx).await?;
        let guild = api.ensure_guild(&sender, &actor, &external_id, &name).await?;
        let cell = api.commands.guild_cell(guild).await.map_err(ApiError::from)?;
        let name = cell.lock().await.name.clone();
        Ok(ProvisionedGuild { id: ID(guild.to_string()), name })
    }

    /// The channel a host application knows as `externalId` in a guild its token covers:
    /// created the first time (with an optional hub-wide alias `#name:server`), the same
    /// channel ever after.
    async fn ensure_channel(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        external_id: String,
        name: String,
        kind: Option<super::ChannelKind>,
        alias: Option<String>,
        #[graphql(
            desc = "Hidden from @everyone (an overwrite denying VIEW_CHANNEL); roles or members are let in with overwrites."
        )]
        private: Option<bool>,
    ) -> Res<ProvisionedChannel> {
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.service_for(ctx, guild)?;
        if let Some(a) = &alias {
            openguild_domain::hub::validate_alias(a).map_err(ApiError::from)?;
        }
        let (sender, actor) = api.hub_actor(ctx)?;
        let spec = crate::provision::ChannelSpec {
            guild,
            external_id,
            name,
            kind: kind.unwrap_or(super::ChannelKind::Text).into(),
            alias,
            private: private.unwrap_or(false),
        };
        let channel = api.ensure_channel(&sender, &actor, &spec).await?;
        channel_info(api, guild, channel).await
    }

    /// The role named `name` in a guild the token covers: created the first time with these
    /// permissions, the same role ever after (found by name).
    async fn ensure_role(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        name: String,
        #[graphql(default)] permissions: Vec<super::Permission>,
    ) -> Res<super::RoleObj> {
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.service_for(ctx, guild)?;
        let role = api.ensure_role(guild, &name, super::permissions_of(&permissions)).await?;
        let cell = api.commands.guild_cell(guild).await.map_err(ApiError::from)?;
        let g = cell.lock().await;
        super::types::role_obj(&g, role).ok_or_else(|| ApiError::not_found("the role is gone").into())
    }

    /// Archives a guild the token covers (owned by the service identity): read-only at once;
    /// after the hub's retention (60 days by default) its message bodies are erased.
    async fn archive_guild(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.service_for(ctx, guild)?;
        let cmd = openguild_domain::guild::GuildCommand::ArchiveGuild { reason };
        api.commands.guild(&api.services_user()?, guild, &cmd, now()).await.map_err(ApiError::from)?;
        Ok(true)
    }

    /// Archives a channel of a guild the token covers: read-only at once; after the hub's
    /// retention its message bodies are erased.
    async fn archive_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let api = api(ctx);
        let channel: openguild_domain::ChannelId = channel_id.0;
        let guild = api.commands.guild_of(channel).await.map_err(ApiError::from)?;
        api.service_for(ctx, guild)?;
        let cmd = openguild_domain::guild::GuildCommand::ArchiveChannel { channel, reason };
        api.commands.guild(&api.services_user()?, guild, &cmd, now()).await.map_err(ApiError::from)?;
        Ok(true)
    }
}

async fn channel_info(api: &Api, guild: GuildId, channel: openguild_domain::ChannelId) -> Res<ProvisionedChannel> {
    let name = {
        let cell = api.commands.guild_cell(guild).await.map_err(ApiError::from)?;
        let g = cell.lock().await;
        g.channels.get(&channel).map(|c| c.name.clone()).unwrap_or_default()
    };
    let alias = {
        let hub = api.commands.hub_cell().await.map_err(ApiError::from)?;
        let hub = hub.lock().await;
        hub.aliases.iter().find(|(_, (_, c))| *c == channel).map(|(a, _)| a.clone())
    };
    Ok(ProvisionedChannel { id: ID(channel.to_string()), guild_id: ID(guild.to_string()), name, alias })
}

#[derive(Default)]
pub struct ProvisionQuery;

#[Object]
impl ProvisionQuery {
    /// The channel an alias (`#name:server`) names on this hub.
    async fn channel_by_alias(&self, ctx: &Context<'_>, alias: String) -> Res<ProvisionedChannel> {
        let api = api(ctx);
        api.hub_actor(ctx)?;
        let found = api.commands.hub_cell().await.map_err(ApiError::from)?.lock().await.aliases.get(&alias).copied();
        let (guild, channel) = found.ok_or_else(|| ApiError::not_found(format!("no channel has the alias {alias}")))?;
        channel_info(api, guild, channel).await
    }
}

/// One step of a level → role mapping (`[[api.level_roles]]`): from `min` up, `role` (a role
/// name in the guild).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRole {
    pub min: i64,
    pub role: String,
}

#[derive(Default)]
pub struct SyncMutation;

impl Api {
    /// Adds `user` to `guild` if needed, then gives them exactly `wanted` among `managed`
    /// roles (all roles if `managed` is `None`), each change an audited event with `reason`.
    async fn sync_roles(
        &self,
        guild: GuildId,
        user: &UserId,
        wanted: &BTreeSet<openguild_domain::RoleId>,
        managed: Option<&BTreeSet<openguild_domain::RoleId>>,
        reason: &str,
    ) -> Result<Vec<openguild_domain::RoleId>, ApiError> {
        use openguild_domain::guild::GuildCommand as C;
        let services = self.services_user()?;
        let cell = self.commands.guild_cell(guild).await?;
        let (member, held) = {
            let g = cell.lock().await;
            for r in wanted {
                if !g.roles.contains_key(r) {
                    return Err(ApiError::not_found(format!("role {r} is not a role of guild {guild}")));
                }
            }
            let held = g.members.get(user).map(|m| m.roles.clone());
            (held.is_some(), held.unwrap_or_default())
        };
        if !member {
            self.commands.guild(&services, guild, &C::AddMember { user: user.clone() }, now()).await?;
        }
        let in_scope = |r: &openguild_domain::RoleId| managed.is_none_or(|m| m.contains(r));
        for r in held.iter().filter(|r| in_scope(r) && !wanted.contains(r)) {
            let cmd = C::UnassignRole { user: user.clone(), role: *r, reason: reason.to_owned() };
            self.commands.guild(&services, guild, &cmd, now()).await?;
        }
        for r in wanted.iter().filter(|r| !held.contains(r)) {
            let cmd = C::AssignRole { user: user.clone(), role: *r, reason: reason.to_owned() };
            self.commands.guild(&services, guild, &cmd, now()).await?;
        }
        let g = cell.lock().await;
        Ok(g.members.get(user).map(|m| m.roles.iter().copied().collect()).unwrap_or_default())
    }
}

#[Object]
impl SyncMutation {
    /// Gives a member exactly these roles (adding them to the guild first if needed). Needs a
    /// service token covering the guild; every change is audited with `reason`.
    async fn sync_member_roles(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        role_ids: Vec<Id<RoleId>>,
        #[graphql(default)] reason: String,
    ) -> Res<Vec<ID>> {
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.service_for(ctx, guild)?;
        let user: UserId = user_id.0;
        let wanted: BTreeSet<_> = role_ids.into_iter().map(|r| r.0).collect();
        let now_held = api.sync_roles(guild, &user, &wanted, None, &reason).await?;
        Ok(now_held.into_iter().map(|r| ID(r.to_string())).collect())
    }

    /// Sets a member's roles from an external level (a trust score, say) through the hub's
    /// `level_roles` mapping: the role of the highest threshold at or below `level`, and
    /// none of the other mapped roles. Other roles are left alone.
    async fn sync_member_level(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        level: i32,
        #[graphql(default)] reason: String,
    ) -> Res<Vec<ID>> {
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.service_for(ctx, guild)?;
        let user: UserId = user_id.0;
        if api.settings.level_roles.is_empty() {
            return Err(ApiError::invalid("level", "this hub maps no levels to roles (api.level_roles)").into());
        }
        let by_name = |name: &str, g: &openguild_domain::guild::Guild| {
            g.roles.iter().find(|(_, r)| r.name == name).map(|(id, _)| *id)
        };
        let (managed, wanted) = {
            let cell = api.commands.guild_cell(guild).await.map_err(ApiError::from)?;
            let g = cell.lock().await;
            let mut managed = BTreeSet::new();
            for step in &api.settings.level_roles {
                let id = by_name(&step.role, &g)
                    .ok_or_else(|| ApiError::not_found(format!("the guild has no role named {:?}", step.role)))?;
                managed.insert(id);
            }
            let chosen = api.settings.level_roles.iter().filter(|s| s.min <= i64::from(level)).max_by_key(|s| s.min);
            let wanted: BTreeSet<_> = chosen.and_then(|s| by_name(&s.role, &g)).into_iter().collect();
            (managed, wanted)
        };
        let reason = if reason.is_empty() { format!("level {level}") } else { reason };
        let now_held = api.sync_roles(guild, &user, &wanted, Some(&managed), &reason).await?;
        Ok(now_held.into_iter().map(|r| ID(r.to_string())).collect())
    }
}

/// One operator act inside a guild, as the hub's log shows it.
#[derive(SimpleObject)]
pub struct OperatorAct {
    pub guild_id: ID,
    pub event_id: ID,
    pub kind: String,
    pub reason: String,
}

#[derive(Default)]
pub struct OperatorMutation;

impl Api {
    /// The person calling, if the hub lets them act as an operator
    /// (`policy::may_act_as_operator`). Operator acts are a person's, signed with their name.
    async fn operator(&self, ctx: &Context<'_>) -> Result<(UserId, HubActor), ApiError> {
        let (user, actor) = person(ctx)?;
        self.hub_allows(|hub| policy::may_act_as_operator(hub, &actor)).await?;
        Ok((user, actor))
    }

    /// Runs an operator's act in a guild and records it in the hub's log too.
    async fn operator_act(
        &self,
        operator: &UserId,
        actor: &HubActor,
        guild: GuildId,
        cmd: &openguild_domain::guild::GuildCommand,
        reason: &str,
    ) -> Result<(), ApiError> {
        let done = self.commands.guild_as_operator(operator, guild, cmd, now()).await?;
        self.wrote(operator, done.position);
        for e in &done.events {
            let record = HubCommand::RecordOperatorAct {
                guild,
                event: e.id,
                kind: e.content().kind().to_owned(),
                reason: reason.to_owned(),
            };
            self.commands.hub(operator, actor, &record, now()).await?;
        }
        Ok(())
    }
}

#[Object]
impl OperatorMutation {
    /// Archives any guild (hub operators only): read-only at once; in the guild's audit log
    /// and the hub's.
    async fn hub_archive_guild(&self, ctx: &Context<'_>, guild_id: Id<GuildId>, reason: String) -> Res<bool> {
        let api = api(ctx);
        let (operator, actor) = api.operator(ctx).await?;
        let guild: GuildId = guild_id.0;
        let cmd = openguild_domain::guild::GuildCommand::ArchiveGuild { reason: reason.clone() };
        api.operator_act(&operator, &actor, guild, &cmd, &reason).await?;
        Ok(true)
    }

    /// Resolves any report in any guild (hub operators only).
    async fn hub_resolve_report(
        &self,
        ctx: &Context<'_>,
        report_id: Id<ReportId>,
        action: super::ReportAction,
        reason: String,
    ) -> Res<bool> {
        let api = api(ctx);
        let (operator, actor) = api.operator(ctx).await?;
        let report: openguild_domain::ReportId = report_id.0;
        let guild = api.guild_of_report(&report).await?;
        let cmd = openguild_domain::guild::GuildCommand::ResolveReport {
            report,
            action: action.into(),
            reason: reason.clone(),
        };
        api.operator_act(&operator, &actor, guild, &cmd, &reason).await?;
        Ok(true)
    }

    /// Bans a user from the whole hub (hub operators only): their sessions stop working at
    /// once, and they are banned in every guild they are a member of, each ban in that
    /// guild's audit log and the hub's.
    async fn hub_ban_user(
        &self,
        ctx: &Context<'_>,
        user_id: Id<UserId>,
        reason: String,
        #[graphql(
            default,
            validator(maximum = 604_800),
            desc = "Also delete what they posted in the last this many seconds (at most 7 days), in every guild."
        )]
        delete_message_seconds: u32,
    ) -> Res<bool> {
        let api = api(ctx);
        let (operator, actor) = api.operator(ctx).await?;
        let user: UserId = user_id.0;
        // A retry after a partial failure finishes the guild bans instead of stopping at
        // "already banned from the hub".
        let already = api.commands.hub_cell().await.map_err(ApiError::from)?.lock().await.banned.contains_key(&user);
        if !already {
            let ban = HubCommand::BanUser { user: user.clone(), reason: reason.clone() };
            api.commands.hub(&operator, &actor, &ban, now()).await.map_err(ApiError::from)?;
        }
        // Every membership up to now: the directory first catches up with the store.
        let head = api.store.head_position().await.map_err(ApiError::from)?;
        let wait = std::time::Duration::from_millis(api.settings.limits.read_your_writes_ms.max(5_000));
        api.projections.wait_for(&["directory"], head, wait).await.map_err(ApiError::from)?;
        let guilds =
            openguild_projections::queries::guilds_of(api.projections.db(), &user).await.map_err(ApiError::from)?;
        for guild in guilds {
            let cmd = openguild_domain::guild::GuildCommand::Ban {
                user: user.clone(),
                reason: reason.clone(),
                purge_seconds: delete_message_seconds,
            };
            api.operator_act(&operator, &actor, guild, &cmd, &reason).await?;
        }
        Ok(true)
    }
}

#[derive(Default)]
pub struct OperatorQuery;

#[Object]
impl OperatorQuery {
    /// The hub's log of operator acts inside guilds, newest first (hub operators only).
    async fn hub_operator_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 1_000))] last: usize,
    ) -> Res<Vec<OperatorAct>> {
        let api = api(ctx);
        api.operator(ctx).await?;
        let events = api
            .store
            .read_stream(
                &openguild_domain::StreamId::Hub,
                u64::MAX,
                last.min(500),
                openguild_store::Direction::Backward,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(events
            .iter()
            .filter_map(|e| match e.event.content() {
                openguild_domain::EventBody::OperatorActed { guild, event, kind, reason } => Some(OperatorAct {
                    guild_id: ID(guild.to_string()),
                    event_id: ID(event.to_string()),
                    kind: kind.clone(),
                    reason: reason.clone(),
                }),
                _ => None,
            })
            .collect())
    }
}

/// A bot of a guild, as its admins see it.
#[derive(SimpleObject)]
pub struct Bot {
    pub user: User,
    pub display_name: String,
    pub created_at: super::DateTime,
    /// When one of its tokens was last used (on the node answering).
    pub last_used_at: Option<super::DateTime>,
    /// How many of its tokens are live.
    pub live_tokens: i32,
}

#[derive(Default)]
pub struct BotQuery;

#[Object]
impl BotQuery {
    /// The bots of a guild (needs MANAGE_GUILD).
    async fn bots(&self, ctx: &Context<'_>, guild_id: Id<GuildId>) -> Res<Vec<Bot>> {
        let api = api(ctx);
        let viewer = ctx.data_opt::<Viewer>().ok_or_else(ApiError::login_required)?;
        let guild: GuildId = guild_id.0;
        let g = api.require(&viewer.user, guild, openguild_domain::Permissions::MANAGE_GUILD, "listing bots").await?;
        let used = api.token_last_used.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        for user in g.members.keys() {
            let cell = api.commands.account_cell(user).await.map_err(ApiError::from)?;
            let account = cell.lock().await;
            if account.bot_of != Some(guild) {
                continue;
            }
            let now = now();
            out.push(Bot {
                user: User(user.clone()),
                display_name: account.display_name.clone(),
                created_at: account.created_at.into(),
                last_used_at: account.sessions.keys().filter_map(|h| used.get(h)).max().copied().map(super::DateTime),
                live_tokens: account.sessions.values().filter(|expiry| **expiry > now).count() as i32,
            });
        }
        Ok(out)
    }
}

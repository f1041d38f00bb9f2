//! Provisioning workflows for host applications: a guild, a channel, a role or a DM among
//! its users by the host's own ids or name, made the first time and the same one ever after. Each is safe to retry and
//! to race:
//!
//! - **Link first, then create.** The hub stream, which serialises every link, decides who
//!   wins an external id. A guild's id is fixed before it exists (the id hashes its
//!   creator, time and a nonce, and the nonce here is derived from the external id, the time
//!   being the link's), so whoever comes next — a racer that lost, or a retry after a crash
//!   between the two steps — creates exactly that guild, and creating it twice writes
//!   nothing the second time.
//! - **One command for one thing.** A private channel is created with its overwrites in the
//!   same append; a role is found or created in one decision under the guild's lock.
//!
//! The resolvers in `gql::hub` check who may call and map the answers; the logic is here.

use std::collections::BTreeSet;

use openguild_domain::channel::MessageCommand;
use openguild_domain::guild::{self, GuildCommand};
use openguild_domain::hub::{HubActor, HubCommand};
use openguild_domain::permissions::{Overwrite, OverwriteTarget};
use openguild_domain::{
    ChannelId, ChannelKind, DomainError, EventBody, GuildId, Permissions, RoleId, StreamId, Timestamp, UserId,
};
use openguild_store::{Direction, StoreError};

use crate::Api;
use crate::clock::now;
use crate::commands::{CommandError, random16};
use crate::errors::ApiError;

/// The nonce of the guild provisioned for `external_id`.
fn guild_nonce(external_id: &str) -> [u8; 16] {
    let hash = blake3::derive_key("openguild 2026-12 provisioned guild nonce", external_id.as_bytes());
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&hash[..16]);
    nonce
}

/// What a host application asks a provisioned channel to be.
pub struct ChannelSpec {
    pub guild: GuildId,
    pub external_id: String,
    pub name: String,
    pub kind: ChannelKind,
    pub alias: Option<String>,
    /// Hidden from `@everyone` from the first moment.
    pub private: bool,
}

impl Api {
    /// The guild a host application knows as `external_id`, owned by the hub's service
    /// identity; `(sender, actor)` link it on the hub stream.
    pub async fn ensure_guild(
        &self,
        sender: &UserId,
        actor: &HubActor,
        external_id: &str,
        name: &str,
    ) -> Result<GuildId, ApiError> {
        let services = self.hub_identity("_services")?;
        let linked = self.commands.hub_cell().await?.lock().await.external_guilds.get(external_id).copied();
        let (guild, at) = match linked {
            Some(guild) => (guild, None),
            None => {
                let at = now();
                let (guild, _) = guild::create(&services, &self.server, name, guild_nonce(external_id), at)?;
                let link = HubCommand::LinkExternalGuild { external_id: external_id.to_owned(), guild };
                match self.commands.hub(sender, actor, &link, at).await {
                    Ok(_) => (guild, Some(at)),
                    // Another call linked it first: theirs is the guild.
                    Err(CommandError::Domain(DomainError::Conflict(_))) => {
                        let hub = self.commands.hub_cell().await?;
                        let winner = hub.lock().await.external_guilds.get(external_id).copied();
                        (winner.ok_or_else(|| ApiError::internal("an external guild link vanished"))?, None)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if self.commands.guild_cell(guild).await.is_ok() {
            return Ok(guild);
        }
        // Linked but not created (the linking call stopped in between): create it now, with
        // the time of its link, so it gets the id the link names.
        let at = match at {
            Some(at) => at,
            None => self.link_time(external_id).await?,
        };
        let (id, _) = guild::create(&services, &self.server, name, guild_nonce(external_id), at)?;
        if id != guild {
            return Err(ApiError::internal(format!(
                "external guild {external_id:?} is linked to {guild}, which was never created and cannot be made again"
            )));
        }
        match self.commands.create_guild_seeded(&services, name, guild_nonce(external_id), at).await {
            Ok(_) | Err(CommandError::Store(StoreError::Conflict { .. })) => Ok(guild),
            Err(e) => Err(e.into()),
        }
    }

    /// When `external_id` was linked to its guild (read from the hub stream; needed only to
    /// finish a guild whose creation was interrupted).
    async fn link_time(&self, external_id: &str) -> Result<Timestamp, ApiError> {
        let mut from = 1;
        loop {
            let page = self.store.read_stream(&StreamId::Hub, from, 500, Direction::Forward).await?;
            let Some(last) = page.last() else { break };
            from = last.event.core.seq + 1;
            for e in &page {
                if let EventBody::ExternalGuildLinked { external_id: linked, .. } = e.event.content()
                    && linked == external_id
                {
                    return Ok(e.event.core.ts);
                }
            }
        }
        Err(ApiError::internal(format!("no link for external guild {external_id:?} in the hub stream")))
    }

    /// The channel a host application knows as `spec.external_id`, created in `spec.guild`
    /// (private ones with their overwrite in the same command) and linked on the hub stream.
    pub async fn ensure_channel(
        &self,
        sender: &UserId,
        actor: &HubActor,
        spec: &ChannelSpec,
    ) -> Result<ChannelId, ApiError> {
        let linked = self.commands.hub_cell().await?.lock().await.external_channels.get(&spec.external_id).copied();
        let channel = match linked {
            Some((g, c)) if g == spec.guild => c,
            Some((g, _)) => return Err(other_guild(&spec.external_id, g)),
            None => {
                let channel = ChannelId::from_bytes(random16());
                let link = HubCommand::LinkExternalChannel {
                    external_id: spec.external_id.clone(),
                    guild: spec.guild,
                    channel,
                    alias: spec.alias.clone(),
                };
                match self.commands.hub(sender, actor, &link, now()).await {
                    Ok(_) => channel,
                    Err(CommandError::Domain(e @ DomainError::Conflict(_))) => {
                        let hub = self.commands.hub_cell().await?;
                        let winner = hub.lock().await.external_channels.get(&spec.external_id).copied();
                        match winner {
                            Some((g, c)) if g == spec.guild => c,
                            Some((g, _)) => return Err(other_guild(&spec.external_id, g)),
                            // Not the id: the alias is taken.
                            None => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let services = self.hub_identity("_services")?;
        let overwrites = if spec.private {
            vec![(
                OverwriteTarget::Role(RoleId::EVERYONE),
                Overwrite { allow: Permissions::empty(), deny: Permissions::VIEW_CHANNEL },
            )]
        } else {
            Vec::new()
        };
        let create = GuildCommand::CreateChannel {
            channel,
            name: spec.name.clone(),
            kind: spec.kind,
            category: None,
            topic: String::new(),
            overwrites,
        };
        let at = now();
        self.commands
            .guild_with(&services, spec.guild, at, |g| {
                if g.channels.contains_key(&channel) {
                    return Ok(Vec::new());
                }
                guild::decide(g, &services, &create, at)
            })
            .await?;
        Ok(channel)
    }

    /// The role named `name` in `guild`, created with `permissions` the first time: found or
    /// created in one decision under the guild's lock, so racing calls make one role.
    pub async fn ensure_role(&self, guild: GuildId, name: &str, permissions: Permissions) -> Result<RoleId, ApiError> {
        let name = name.trim().to_owned();
        let services = self.hub_identity("_services")?;
        let create = GuildCommand::CreateRole { role: RoleId::from_bytes(random16()), name: name.clone(), permissions };
        let at = now();
        self.commands
            .guild_with(&services, guild, at, |g| {
                if g.roles.values().any(|r| r.name == name) {
                    return Ok(Vec::new());
                }
                guild::decide(g, &services, &create, at)
            })
            .await?;
        let cell = self.commands.guild_cell(guild).await?;
        let role = cell.lock().await.roles.iter().find(|(_, r)| r.name == name).map(|(id, _)| *id);
        role.ok_or_else(|| ApiError::not_found(format!("the role {name:?} is gone")))
    }
}

fn other_guild(external_id: &str, guild: GuildId) -> ApiError {
    ApiError::new("CONFLICT", format!("external id {external_id:?} is a channel of guild {guild}"))
}

/// The hub-stream key under which a host application's DM among `users` is linked.
fn dm_link(users: &BTreeSet<UserId>) -> String {
    let joined: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let hash = blake3::derive_key("openguild 2026-12 provisioned dm", joined.join("\n").as_bytes());
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("dm:{hex}")
}

impl Api {
    /// The DM a host application keeps among the users it knows as `external_ids`: opened
    /// the first time by the hub's service identity (which stays in it, like a bot, to post
    /// `message` as its first message), the same DM ever after. Linked on the hub stream as
    /// `dm:<hash of its people>`, so two calls at once make one.
    pub async fn ensure_dm(
        &self,
        sender: &UserId,
        actor: &HubActor,
        external_ids: &[String],
        message: Option<&str>,
    ) -> Result<GuildId, ApiError> {
        let services = self.hub_identity("_services")?;
        let mut users = BTreeSet::new();
        for external_id in external_ids {
            let user = self.linked_user(external_id).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "no user is linked to external id {external_id:?}; provision them with ensureUser first"
                ))
            })?;
            users.insert(user);
        }
        let key = dm_link(&users);
        let nonce = guild_nonce(&key);
        let linked = self.commands.hub_cell().await?.lock().await.external_guilds.get(&key).copied();
        let (dm, at) = match linked {
            Some(dm) => (dm, None),
            None => {
                let at = now();
                let (dm, _) = guild::create_dm(&services, &self.server, &users, nonce, at)?;
                let link = HubCommand::LinkExternalGuild { external_id: key.clone(), guild: dm };
                match self.commands.hub(sender, actor, &link, at).await {
                    Ok(_) => (dm, Some(at)),
                    Err(CommandError::Domain(DomainError::Conflict(_))) => {
                        let hub = self.commands.hub_cell().await?;
                        let winner = hub.lock().await.external_guilds.get(&key).copied();
                        (winner.ok_or_else(|| ApiError::internal("an external DM link vanished"))?, None)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if self.commands.guild_cell(dm).await.is_ok() {
            return Ok(dm);
        }
        let at = match at {
            Some(at) => at,
            None => self.link_time(&key).await?,
        };
        match self.commands.create_dm(&services, &users, nonce, at).await {
            Ok((id, _)) if id == dm => {}
            Ok(_) => return Err(ApiError::internal(format!("the DM linked as {key} was made with another id"))),
            Err(CommandError::Store(StoreError::Conflict { .. })) => return Ok(dm),
            Err(e) => return Err(e.into()),
        }
        if let Some(text) = message.filter(|t| !t.trim().is_empty()) {
            let post = MessageCommand::Post {
                mention_roles: Default::default(),
                attachments: Vec::new(),
                extra: None,
                text: text.to_owned(),
                reply_to: None,
                mentions: BTreeSet::new(),
                mentions_everyone: false,
            };
            let done = self.commands.message(&services, crate::dms::dm_channel(dm), &post, now()).await?;
            self.wrote(sender, done.position);
        }
        Ok(dm)
    }
}

//! Direct messages: who may open one with whom, finding the one a set of people already
//! has, and the blocks that hide people from each other.
//!
//! A DM is a guild of one channel (`openguild_domain::guild::create_dm`), owned by the hub
//! of the one who opened it, so it travels, is authorised and replicated like any guild;
//! this module holds what crosses accounts and guilds, which no one aggregate can decide.

use std::collections::BTreeSet;
use std::sync::Arc;

use openguild_domain::guild::Guild;
use openguild_domain::{ChannelId, GuildId, UserId};
use openguild_projections::queries;

use crate::Api;
use crate::clock::now;
use crate::commands::random16;
use crate::errors::ApiError;

impl Api {
    /// The DM of `me` and `others`: the one they already share, or a new one owned here.
    /// Refused when one of them blocked the other, when a local person refuses DMs from
    /// people they share no guild with, or when someone lives on a hub that is not a peer.
    pub async fn open_dm(&self, me: &UserId, others: &BTreeSet<UserId>) -> Result<ChannelId, ApiError> {
        openguild_domain::guild::check_dm_people(me, others)?;
        // One opening at a time on this node, once the directory holds everything stored
        // before it (the last DM opened, a join that makes two people share a guild), so
        // the same people asking twice at once get one conversation.
        let _one_at_a_time = self.dm_opening.lock().await;
        let head = self.store.head_position().await?;
        let wait = std::time::Duration::from_millis(self.settings.limits.read_your_writes_ms.max(5_000));
        self.projections.wait_for(&["directory"], head, wait).await?;
        for other in others {
            self.may_dm(me, other).await?;
        }
        if let Some(existing) = self.dm_of(me, others).await? {
            return Ok(existing);
        }
        let (id, done) = self.commands.create_dm(me, others, random16(), now()).await?;
        self.wrote(me, done.position);
        Ok(dm_channel(id))
    }

    /// The DM whose people are exactly `me` and `others`, if there is one.
    async fn dm_of(&self, me: &UserId, others: &BTreeSet<UserId>) -> Result<Option<ChannelId>, ApiError> {
        let mut people = others.clone();
        people.insert(me.clone());
        for id in queries::guilds_of(self.projections.db(), me).await? {
            let Ok(cell) = self.commands.guild_cell(id).await else { continue };
            let g = cell.lock().await;
            if g.dm
                && !g.archived
                && g.members.len() == people.len()
                && people.iter().all(|p| g.members.contains_key(p))
            {
                return Ok(Some(dm_channel(id)));
            }
        }
        Ok(None)
    }

    /// Whether `me` may open a DM with `other`, as far as this hub can tell: a person of
    /// another hub is asked nothing here (their hub holds their blocks).
    async fn may_dm(&self, me: &UserId, other: &UserId) -> Result<(), ApiError> {
        let mine = self.commands.account_cell(me).await?;
        if mine.lock().await.blocked.contains(other) {
            return Err(ApiError::forbidden(format!("you blocked {other}; unblock them to message them")));
        }
        if other.server() != self.server {
            if self.peer(&other.server()).await?.is_none() {
                return Err(ApiError::forbidden(format!(
                    "{other} lives on {}, which is not a peer of this hub; ask an operator to allow it",
                    other.server()
                )));
            }
            return Ok(());
        }
        let theirs = self.commands.account_cell(other).await?;
        let theirs = theirs.lock().await;
        if theirs.user.is_none() {
            return Err(ApiError::not_found(format!("there is no user {other} on this hub")));
        }
        if theirs.blocked.contains(me) {
            return Err(ApiError::forbidden(format!("{other} does not accept direct messages from you")));
        }
        if theirs.refuses_strangers && !self.share_a_guild(me, other).await? {
            return Err(ApiError::forbidden(format!(
                "{other} only accepts direct messages from people they share a guild with"
            )));
        }
        Ok(())
    }

    async fn share_a_guild(&self, a: &UserId, b: &UserId) -> Result<bool, ApiError> {
        let theirs: BTreeSet<GuildId> = queries::guilds_of(self.projections.db(), b).await?.into_iter().collect();
        for id in queries::guilds_of(self.projections.db(), a).await? {
            if !theirs.contains(&id) {
                continue;
            }
            if let Ok(cell) = self.commands.guild_cell(id).await {
                let g = cell.lock().await;
                if !g.dm && g.members.contains_key(a) && g.members.contains_key(b) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Refuses a post by `me` in a two-person DM whose other person (on this hub) blocked
    /// them. In a group DM the post goes through and is hidden from the blocker only.
    pub async fn may_post_in(&self, me: &UserId, channel: ChannelId) -> Result<(), ApiError> {
        let Ok(guild) = self.commands.guild_of(channel).await else { return Ok(()) };
        let other = {
            let cell = self.commands.guild_cell(guild).await?;
            let g = cell.lock().await;
            if !g.dm || g.members.len() != 2 {
                return Ok(());
            }
            g.members.keys().find(|u| *u != me).cloned()
        };
        for other in other.iter().filter(|u| u.server() == self.server) {
            let theirs = self.commands.account_cell(other).await?;
            if theirs.lock().await.blocked.contains(me) {
                return Err(ApiError::forbidden(format!("{other} does not accept direct messages from you")));
            }
        }
        Ok(())
    }

    /// The notification level `me` set for `channel` of `guild` (or the guild), `All` unless
    /// set (and for people of other hubs, whose settings live there).
    pub async fn notify_level(
        &self,
        me: &UserId,
        guild: GuildId,
        channel: Option<ChannelId>,
    ) -> Result<openguild_domain::body::NotifyLevel, ApiError> {
        if me.server() != self.server {
            return Ok(Default::default());
        }
        Ok(self.commands.account_cell(me).await?.lock().await.notify_level(guild, channel))
    }

    /// The users `me` blocked (empty for a person of another hub).
    pub async fn blocked_by(&self, me: &UserId) -> Result<BTreeSet<UserId>, ApiError> {
        if me.server() != self.server {
            return Ok(BTreeSet::new());
        }
        Ok(self.commands.account_cell(me).await?.lock().await.blocked.clone())
    }

    /// The DMs `me` is in, newest first.
    pub async fn dms_of(&self, me: &UserId) -> Result<Vec<Arc<Guild>>, ApiError> {
        let mut out = Vec::new();
        for id in queries::guilds_of(self.projections.db(), me).await? {
            // Looked at in place; only the DMs are copied out (a guild can be large).
            let Ok(cell) = self.commands.guild_cell(id).await else { continue };
            let g = cell.lock().await;
            if g.dm && g.members.contains_key(me) {
                out.push(Arc::new(g.clone()));
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// A DM's one channel: its id has the DM's bytes.
pub fn dm_channel(id: GuildId) -> ChannelId {
    ChannelId::from_bytes(*id.as_bytes())
}

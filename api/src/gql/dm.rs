//! Direct messages and blocks: `openDm`, `dms`, `blockUser`, `setDmPolicy`, and
//! `ensureDm` for host applications. The rules live in `crate::dms` and `crate::provision`.

use std::collections::BTreeSet;

use async_graphql::{Context, Object};
use openguild_domain::UserId;
use openguild_domain::account::AccountCommand;

use super::{ChannelObj, Id, User, api, viewer};
use crate::dms::dm_channel;
use crate::errors::{ApiError, Res};

#[derive(Default)]
pub struct DmQuery;

#[Object]
impl DmQuery {
    /// The viewer's direct messages, newest first, each a channel of kind `DM` or `GROUP_DM`.
    async fn dms(&self, ctx: &Context<'_>) -> Res<Vec<ChannelObj>> {
        let me = viewer(ctx)?.user.clone();
        let api = api(ctx);
        api.read_your_writes(ctx, &["directory"]).await?;
        let dms = api.dms_of(&me).await?;
        Ok(dms
            .into_iter()
            .filter_map(|g| g.id.map(|id| ChannelObj::new(g.clone(), dm_channel(id), me.clone())))
            .collect())
    }

    /// The people the viewer blocked.
    async fn blocked_users(&self, ctx: &Context<'_>) -> Res<Vec<User>> {
        let me = viewer(ctx)?.user.clone();
        Ok(api(ctx).blocked_by(&me).await?.into_iter().map(User).collect())
    }
}

#[derive(Default)]
pub struct DmMutation;

#[Object]
impl DmMutation {
    /// The direct message between the viewer and `userIds` (1 to 9 others): the one they
    /// already have, or a new one. Refused if either side blocked the other, or if someone
    /// accepts DMs only from people they share a guild with and the viewer is not one.
    async fn open_dm(&self, ctx: &Context<'_>, user_ids: Vec<Id<UserId>>) -> Res<ChannelObj> {
        let me = viewer(ctx)?.user.clone();
        let api = api(ctx);
        let others: BTreeSet<UserId> = user_ids.into_iter().map(|u| u.0).collect();
        let channel = api.open_dm(&me, &others).await?;
        let g = api.channel_view(&me, channel).await?;
        Ok(ChannelObj::new(g, channel, me))
    }

    /// Blocks a user: no new DM between you, no posts from them in your two-person DM, and
    /// their messages hidden from you everywhere.
    async fn block_user(&self, ctx: &Context<'_>, user_id: Id<UserId>) -> Res<bool> {
        api(ctx).own_account(ctx, AccountCommand::Block { user: user_id.0 }).await?;
        Ok(true)
    }

    async fn unblock_user(&self, ctx: &Context<'_>, user_id: Id<UserId>) -> Res<bool> {
        api(ctx).own_account(ctx, AccountCommand::Unblock { user: user_id.0 }).await?;
        Ok(true)
    }

    /// Whether people you share no guild with may open a DM with you (they may, until you
    /// say otherwise).
    async fn set_dm_policy(&self, ctx: &Context<'_>, accept_from_strangers: bool) -> Res<bool> {
        api(ctx).own_account(ctx, AccountCommand::SetDmPolicy { strangers: accept_from_strangers }).await?;
        Ok(true)
    }

    /// The DM a host application keeps among its users (by their external ids, 1 to 9):
    /// opened the first time by the hub's service identity, which posts `message` as its
    /// first message; the same DM, untouched, ever after. Needs a service token that may
    /// provision.
    async fn ensure_dm(
        &self,
        ctx: &Context<'_>,
        external_ids: Vec<String>,
        message: Option<String>,
    ) -> Res<ChannelObj> {
        let api = api(ctx);
        let (sender, actor) = api.provisioner(ctx).await?;
        let dm = api.ensure_dm(&sender, &actor, &external_ids, message.as_deref()).await?;
        let cell = api.commands.guild_cell(dm).await.map_err(ApiError::from)?;
        let g = std::sync::Arc::new(cell.lock().await.clone());
        Ok(ChannelObj::new(g, dm_channel(dm), sender))
    }
}

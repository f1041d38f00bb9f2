//! Threads: `startThread` under a message, and following them. A thread is a channel of
//! kind `THREAD` in the guild (`thread.started`), with its parent's permissions and its
//! messages in a stream of its own; every message query and mutation works in it as in
//! any channel. Its fields (`parent`, `starterMessage`, `messageCount`, …) are `Channel`'s.

use async_graphql::{Context, Object};
use openguild_domain::account::AccountCommand;
use openguild_domain::guild::GuildCommand;
use openguild_domain::{ChannelId, MessageId};

use super::{ChannelObj, Id, api, viewer};
use crate::commands::random16;
use crate::errors::{ApiError, Res};

/// A thread with no message for this long shows as archived; a new message wakes it.
pub const ARCHIVE_AFTER_MS: u64 = 3 * 24 * 3_600_000;

#[derive(Default)]
pub struct ThreadMutation;

#[Object]
impl ThreadMutation {
    /// Starts a thread under a message (CREATE_PUBLIC_THREADS in its channel), or returns
    /// the one it already has. Its starter follows it.
    async fn start_thread(&self, ctx: &Context<'_>, message_id: Id<MessageId>, name: String) -> Res<ChannelObj> {
        let api = api(ctx);
        let me = viewer(ctx)?.user.clone();
        let message: MessageId = message_id.0;
        let parent = api.channel_of_message(&message).await?;
        let g = api.channel_view(&me, parent).await?;
        if let Some(existing) = g.thread_of(&message) {
            return Ok(ChannelObj::new(g, existing, me));
        }
        if api.commands.is_redacted(parent, &message).await {
            return Err(ApiError::not_found(format!("message {message} was deleted")).into());
        }
        let guild = g.id.ok_or_else(|| ApiError::internal("a channel's guild has no id"))?;
        let thread = ChannelId::from_bytes(random16());
        api.guild_cmd(ctx, guild, GuildCommand::StartThread { thread, parent, message, name }).await?;
        if me.server() == api.server {
            api.own_account(ctx, AccountCommand::FollowThread { thread, follow: true }).await?;
        }
        Ok(api.channel_obj(&me, thread).await?)
    }

    /// Follows a thread the viewer can see.
    async fn follow_thread(&self, ctx: &Context<'_>, thread_id: Id<ChannelId>) -> Res<bool> {
        follow(ctx, thread_id.0, true).await?;
        Ok(true)
    }

    async fn unfollow_thread(&self, ctx: &Context<'_>, thread_id: Id<ChannelId>) -> Res<bool> {
        follow(ctx, thread_id.0, false).await?;
        Ok(true)
    }
}

async fn follow(ctx: &Context<'_>, thread: ChannelId, on: bool) -> Result<(), ApiError> {
    let api = api(ctx);
    let me = viewer(ctx)?.user.clone();
    let g = api.channel_view(&me, thread).await?;
    if g.channels.get(&thread).and_then(|c| c.thread).is_none() {
        return Err(ApiError::invalid("threadId", format!("{thread} is a channel, not a thread")));
    }
    api.own_account(ctx, AccountCommand::FollowThread { thread, follow: on }).await
}

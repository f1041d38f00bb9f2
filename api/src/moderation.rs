//! The moderation worker: what a moderation event promises, done for real, after it is
//! committed. It follows the event store from its checkpoint (`worker_checkpoints`, name
//! `moderation`) and, for each event:
//!
//! - `message.redacted`: erases the text of the message and of every edit of it from the
//!   event store (the events stay, and still verify: ids and signatures cover the redacted
//!   form), and the timeline and search forget it;
//! - `member.banned` with a purge window: redacts each message the banned user posted in the
//!   guild since then, through the command path — a signed `message.redacted` by whoever
//!   banned, for each message, in the audit log — which in turn erases them as above.
//!
//! Every step is idempotent (erasing twice erases nothing more; a message already redacted
//! is skipped) and the checkpoint moves only past events whose work is done, so a crash
//! resumes where it stopped and repeats nothing that matters.

use std::sync::Weak;
use std::time::Duration;

use openguild_domain::channel::MessageCommand;
use openguild_domain::{ChannelId, EventBody, GuildId, MessageId, StreamId, UserId};
use openguild_projections::queries;
use openguild_store::{Direction, StoredEvent};

use crate::Api;
use crate::clock::now;
use crate::commands::CommandError;
use crate::errors::ApiError;

const NAME: &str = "moderation";
/// The reason each purged message's redaction carries.
pub const PURGE_REASON: &str = "purged with a ban";

/// Runs the worker until the API is dropped; failures are logged and retried.
pub(crate) fn start(api: Weak<Api>) {
    crate::worker::follow(api, NAME, |api, e| Box::pin(api.moderate(e)));
}

impl Api {
    /// Does what one event asks of the moderation worker (nothing for most).
    async fn moderate(&self, e: &StoredEvent) -> Result<(), ApiError> {
        match (&e.event.core.stream, e.event.content()) {
            (StreamId::Channel(channel), EventBody::MessageRedacted { message, .. }) => {
                self.erase_message(*channel, message, e.position).await
            }
            // The owner purges; its redactions reach the copies on other hubs.
            (StreamId::Guild(guild), EventBody::MemberBanned { user, purge_since: Some(since), .. })
                if e.event.core.origin == self.server =>
            {
                self.purge(*guild, user, since.as_millis(), &e.event.core.sender, e.position).await
            }
            _ => Ok(()),
        }
    }

    /// Erases the text of `message` and of its edits, in the store and the read models.
    async fn erase_message(&self, channel: ChannelId, message: &MessageId, redacted_at: u64) -> Result<(), ApiError> {
        let Some(posted) = self.store.get(message).await? else { return Ok(()) };
        if posted.event.core.stream != StreamId::Channel(channel)
            || !matches!(posted.event.content(), EventBody::MessagePosted { .. })
        {
            // A redaction names a message of its own channel; anything else erases nothing.
            tracing::warn!(%message, %channel, "moderation: a redaction names no message of its channel; ignored");
            return Ok(());
        }
        let mut erase = vec![*message];
        // Edits come after the message in its channel's stream.
        let stream = StreamId::Channel(channel);
        let mut from = posted.event.core.seq + 1;
        loop {
            let page = self.store.read_stream(&stream, from, 500, Direction::Forward).await?;
            let Some(last) = page.last() else { break };
            from = last.event.core.seq + 1;
            erase.extend(page.iter().filter_map(|e| match e.event.content() {
                EventBody::MessageEdited { message: edited, .. } if edited == message => Some(e.event.id),
                _ => None,
            }));
        }
        if let EventBody::MessagePosted { attachments, .. } = posted.event.content() {
            self.erase_attachments(attachments).await?;
        }
        for id in &erase {
            self.store.erase_body(id).await?;
        }
        // After the read models have applied the redaction, so nothing writes the text back.
        self.projections.wait_for(&["timeline", "search"], redacted_at, Duration::from_secs(60)).await?;
        queries::forget_bodies(self.projections.db(), &[*message]).await?;
        Ok(())
    }

    /// Redacts what `user` posted in `guild` since `since_ms`, as `banned_by`, through the
    /// command path. The timeline is first brought up to the ban, so it lists every message
    /// posted before it.
    async fn purge(
        &self,
        guild: GuildId,
        user: &UserId,
        since_ms: u64,
        banned_by: &UserId,
        ban_position: u64,
    ) -> Result<(), ApiError> {
        self.projections.wait_for(&["timeline"], ban_position, Duration::from_secs(60)).await?;
        let mut after = 0;
        let mut purged = 0usize;
        loop {
            let page = queries::messages_of_author(self.projections.db(), guild, user, since_ms, after, 200).await?;
            let Some(&(last, _, _)) = page.last() else { break };
            after = last;
            for (position, channel, message) in page {
                if position > ban_position {
                    // Posted after the ban (it cannot be: a banned user cannot post).
                    continue;
                }
                let cmd = MessageCommand::Purge { message, reason: PURGE_REASON.to_owned() };
                match self.commands.message(banned_by, channel, &cmd, now()).await {
                    Ok(_) => purged += 1,
                    // Already redacted, or its channel is gone: nothing left to purge.
                    Err(CommandError::Domain(e)) => {
                        tracing::debug!(%message, error = %e, "purge: message skipped");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if purged > 0 {
            tracing::info!(%guild, %user, purged, "ban purge: messages redacted");
        }
        Ok(())
    }
}

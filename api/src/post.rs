//! Posting a message: the one path `sendMessage` and the Matrix API's `send` take — who it
//! calls on, its files, who may post, and, in a guild another hub owns, the owner's queue.

use std::collections::BTreeSet;

use openguild_domain::channel::MessageCommand;
use openguild_domain::{ChannelId, DomainError, MediaId, MessageId, Refusal, RoleId, UserId};
use openguild_projections::queries::MessageRow;

use crate::clock::now;
use crate::commands::CommandError;
use crate::errors::ApiError;
use crate::{Api, remote};

/// Who a message's text calls on: `@handle:server` words name people, `@&<role id>` words
/// roles, and `@everyone` (or `@here`) everyone.
#[derive(Default)]
pub struct Mentions {
    pub users: BTreeSet<UserId>,
    pub roles: BTreeSet<RoleId>,
    pub everyone: bool,
}

pub fn mentions(body: &str) -> Mentions {
    let mut found = Mentions::default();
    for word in body.split(|c: char| c.is_whitespace() || ",;!?()<>".contains(c)) {
        let word = word.trim_end_matches('.');
        if word == "@everyone" || word == "@here" {
            found.everyone = true;
        } else if let Some(role) = word.strip_prefix("@&") {
            found.roles.extend(role.parse::<RoleId>().ok());
        } else if word.starts_with('@')
            && let Ok(u) = word.parse()
        {
            found.users.insert(u);
        }
    }
    found
}

impl Api {
    /// Posts `body` (with the uploads `files`, and another protocol's keys `extra`) in
    /// `channel` as `me`: the message as a reader
    /// sees it. In a guild another hub owns, a post waits in a queue while the owner is away
    /// (its id is then provisional and its position 0).
    pub async fn post(
        self: &std::sync::Arc<Self>,
        me: &UserId,
        channel: ChannelId,
        body: String,
        reply_to: Option<MessageId>,
        files: &[MediaId],
        extra: Option<String>,
    ) -> Result<MessageRow, ApiError> {
        let called = mentions(&body);
        let attachments = self.attachments_of(me, files).await?;
        let cmd = MessageCommand::Post {
            text: body.clone(),
            reply_to,
            mentions: called.users,
            mentions_everyone: called.everyone,
            mention_roles: called.roles,
            attachments: attachments.clone(),
            extra,
        };
        self.may_post_in(me, channel).await?;
        let done = match self.commands.message(me, channel, &cmd, now()).await {
            Err(CommandError::Domain(DomainError::Forbidden(Refusal::OwnedElsewhere(owner)))) => {
                self.post_elsewhere(&owner, me, channel, &cmd).await?
            }
            done => remote::Posted::Appended(done.map_err(ApiError::from)?),
        };
        let (id, position, at) = match done {
            remote::Posted::Appended(done) => {
                self.wrote(me, done.position);
                let e = done.events.last().ok_or_else(|| ApiError::internal("a post wrote no event"))?;
                (e.id, done.position, e.core.ts.as_millis())
            }
            remote::Posted::Queued { provisional } => (provisional, 0, now().as_millis()),
        };
        Ok(MessageRow {
            id,
            position,
            channel,
            author: me.clone(),
            body: Some(body),
            reply_to,
            created_at: at,
            edited_at: None,
            deleted: false,
            pinned: false,
            reactions: Vec::new(),
            mine: Vec::new(),
            attachments,
        })
    }
}

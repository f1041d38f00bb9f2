//! A channel's message stream: posting, editing, redacting, reactions and pins, decided
//! against the guild state held in memory.
//!
//! Each message event's envelope `auth` names the guild stream's head it was decided
//! against, so any message can be re-checked later.

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{Attachment, EventBody, ReportTarget};
use crate::error::{DomainError, Refusal};
use crate::event::Event;
use crate::guild::Guild;
use crate::ids::{ChannelId, EventId, MessageId, Timestamp, UserId};
use crate::permissions::Permissions;
use crate::validate;

/// The most bytes of another protocol's keys one message keeps.
pub const MAX_EXTRA_BYTES: usize = 16 * 1024;

/// The most files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// What deciding on a channel's messages needs to know about them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ChannelState {
    pub version: u64,
    pub head: Option<EventId>,
    pub messages: BTreeMap<MessageId, MessageMeta>,
    /// When each user last posted, for slow mode.
    pub last_post: BTreeMap<UserId, Timestamp>,
    /// The proposals' seals this stream carried lately, against replays.
    pub seals: crate::proposal::Recent,
    /// Who is in the channel's voice room (a voice channel's only).
    pub voice: BTreeMap<UserId, crate::voice::Seat>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MessageMeta {
    pub author: UserId,
    pub posted_at: Timestamp,
    pub redacted: bool,
    pub pinned: bool,
    pub reactions: BTreeMap<String, BTreeSet<UserId>>,
}

/// A command on a channel's message stream, by `actor`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MessageCommand {
    Post {
        text: String,
        reply_to: Option<MessageId>,
        mentions: BTreeSet<UserId>,
        mentions_everyone: bool,
        mention_roles: BTreeSet<crate::ids::RoleId>,
        /// Uploads to show with it, as the uploader's hub described them.
        attachments: Vec<Attachment>,
        /// Another protocol's keys, kept as sent (see `EventBody::MessagePosted`).
        extra: Option<String>,
    },
    Edit {
        message: MessageId,
        text: String,
    },
    Redact {
        message: MessageId,
        reason: String,
    },
    /// Redacts a message its author posted inside the purge window of their ban, on behalf
    /// of whoever banned them (the moderation worker does this after a ban).
    Purge {
        message: MessageId,
        reason: String,
    },
    React {
        message: MessageId,
        emoji: String,
    },
    Unreact {
        message: MessageId,
        emoji: String,
    },
    Pin {
        message: MessageId,
    },
    Unpin {
        message: MessageId,
    },
}

/// Decides a message command in `channel` of `guild`.
pub fn decide(
    guild: &Guild,
    channel_id: ChannelId,
    state: &ChannelState,
    actor: &UserId,
    cmd: &MessageCommand,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    use MessageCommand as C;
    guild.exists()?;
    let channel = guild.channel(&channel_id)?;
    if let C::Purge { message, reason } = cmd {
        // Authorised by the ban itself, so it holds for an operator who is not a member,
        // and after the moderator lost the role that let them ban.
        let m = state
            .messages
            .get(message)
            .filter(|m| !m.redacted)
            .ok_or_else(|| DomainError::not_found("message", message))?;
        let in_window = guild
            .bans
            .get(&m.author)
            .is_some_and(|ban| ban.by == *actor && ban.purge_since.is_some_and(|since| m.posted_at >= since));
        if !in_window {
            return Err(DomainError::Forbidden(Refusal::NotInPurge));
        }
        return Ok(vec![EventBody::MessageRedacted { message: *message, reason: validate::reason(reason)? }]);
    }
    if !guild.members.contains_key(actor) {
        return Err(DomainError::Forbidden(if guild.bans.contains_key(actor) {
            Refusal::Banned
        } else {
            Refusal::NotMember
        }));
    }
    let parent_archived = channel.thread.and_then(|t| guild.channels.get(&t.parent)).is_some_and(|p| p.archived);
    if guild.archived || channel.archived || parent_archived {
        return Err(DomainError::Forbidden(Refusal::Archived));
    }
    // In a thread, talking takes its own permission (the rest is the parent's).
    let send =
        if channel.thread.is_some() { Permissions::SEND_MESSAGES_IN_THREADS } else { Permissions::SEND_MESSAGES };
    let perms = guild.channel_permissions(actor, channel_id, now);
    let timed_out = guild.timed_out_until(actor, now);
    let require = |needed: Permissions| -> Result<(), DomainError> {
        if perms.contains(needed) {
            return Ok(());
        }
        Err(match timed_out {
            Some(until) => DomainError::TimedOut { until },
            None if !perms.contains(Permissions::VIEW_CHANNEL) => DomainError::missing(Permissions::VIEW_CHANNEL),
            None => DomainError::missing(needed),
        })
    };
    let message = |id: &MessageId| -> Result<&MessageMeta, DomainError> {
        match state.messages.get(id) {
            Some(m) if !m.redacted => Ok(m),
            _ => Err(DomainError::not_found("message", id)),
        }
    };
    let body = match cmd {
        C::Post { text, reply_to, mentions, mentions_everyone, mention_roles, attachments, extra } => {
            if extra.as_ref().is_some_and(|e| e.len() > MAX_EXTRA_BYTES) {
                return Err(DomainError::invalid(
                    "content",
                    format!("a message's other keys take at most {MAX_EXTRA_BYTES} bytes"),
                ));
            }
            require(send)?;
            if channel.locked && !perms.contains(Permissions::MANAGE_CHANNELS) {
                return Err(DomainError::Forbidden(Refusal::ChannelLocked));
            }
            let exempt = perms.intersects(Permissions::MANAGE_MESSAGES | Permissions::MANAGE_CHANNELS);
            if let Some(last) = state.last_post.get(actor).filter(|_| channel.slow_mode_seconds > 0 && !exempt) {
                let next = last.plus_millis(u64::from(channel.slow_mode_seconds) * 1000);
                if next > now {
                    return Err(DomainError::SlowMode { retry_after_ms: next.as_millis() - now.as_millis() });
                }
            }
            if *mentions_everyone {
                require(Permissions::MENTION_EVERYONE)?;
            }
            if let Some(parent) = reply_to {
                message(parent)?;
            }
            if mentions.len() > 100 {
                return Err(DomainError::invalid("mentions", "at most 100 users can be mentioned"));
            }
            if let Some(unknown) =
                mention_roles.iter().find(|r| !guild.roles.contains_key(r) || **r == crate::ids::RoleId::EVERYONE)
            {
                return Err(DomainError::invalid(
                    "mentions",
                    format!("{unknown} is not a role of this guild to mention"),
                ));
            }
            if !attachments.is_empty() {
                require(Permissions::ATTACH_FILES)?;
            }
            if attachments.len() > MAX_ATTACHMENTS {
                return Err(DomainError::invalid(
                    "attachments",
                    format!("a message has at most {MAX_ATTACHMENTS} files"),
                ));
            }
            let ids: BTreeSet<_> = attachments.iter().map(|a| a.id).collect();
            if ids.len() != attachments.len() {
                return Err(DomainError::invalid("attachments", "the same file is attached twice"));
            }
            // A message of files alone may have no text.
            let text = if attachments.is_empty() {
                validate::message(text)?
            } else {
                validate::text_or_empty("body", text, 4000)?
            };
            EventBody::MessagePosted {
                text,
                reply_to: *reply_to,
                mentions: mentions.clone(),
                mentions_everyone: *mentions_everyone,
                mention_roles: mention_roles.clone(),
                attachments: attachments.clone(),
                extra: extra.clone(),
            }
        }
        C::Edit { message: id, text } => {
            let m = message(id)?;
            if m.author != *actor {
                return Err(DomainError::Forbidden(Refusal::NotAuthor));
            }
            require(send)?;
            EventBody::MessageEdited { message: *id, text: validate::message(text)? }
        }
        C::Redact { message: id, reason } => {
            let m = message(id)?;
            if m.author != *actor {
                require(Permissions::MANAGE_MESSAGES)?;
            }
            EventBody::MessageRedacted { message: *id, reason: validate::reason(reason)? }
        }
        C::Purge { .. } => unreachable!("decided above"),
        C::React { message: id, emoji } => {
            let m = message(id)?;
            require(Permissions::ADD_REACTIONS | Permissions::READ_MESSAGE_HISTORY)?;
            let emoji = validate::emoji(emoji)?;
            if m.reactions.get(&emoji).is_some_and(|users| users.contains(actor)) {
                return Err(DomainError::conflict("you already reacted with that emoji"));
            }
            if !m.reactions.contains_key(&emoji) && m.reactions.len() >= 20 {
                return Err(DomainError::invalid("emoji", "a message has at most 20 different reactions"));
            }
            EventBody::ReactionAdded { message: *id, emoji }
        }
        C::Unreact { message: id, emoji } => {
            let m = message(id)?;
            require(Permissions::VIEW_CHANNEL)?;
            if !m.reactions.get(emoji).is_some_and(|users| users.contains(actor)) {
                return Err(DomainError::not_found("your reaction", emoji));
            }
            EventBody::ReactionRemoved { message: *id, emoji: emoji.clone() }
        }
        C::Pin { message: id } | C::Unpin { message: id } => {
            let pin = matches!(cmd, C::Pin { .. });
            let m = message(id)?;
            // In a DM anyone in it pins, as on Discord; in a guild, moderators do.
            require(if guild.dm { Permissions::VIEW_CHANNEL } else { Permissions::MANAGE_MESSAGES })?;
            if m.pinned == pin {
                return Err(DomainError::conflict(if pin {
                    "the message is already pinned"
                } else {
                    "the message is not pinned"
                }));
            }
            if pin { EventBody::MessagePinned { message: *id } } else { EventBody::MessageUnpinned { message: *id } }
        }
    };
    Ok(vec![body])
}

/// Applies one event of a channel's stream.
pub fn evolve(mut state: ChannelState, event: &Event) -> ChannelState {
    use EventBody as E;
    let sender = &event.core.sender;
    match event.content() {
        E::MessagePosted { .. } => {
            let meta = MessageMeta {
                author: sender.clone(),
                posted_at: event.core.ts,
                redacted: false,
                pinned: false,
                reactions: BTreeMap::new(),
            };
            state.messages.insert(event.id, meta);
            state.last_post.insert(sender.clone(), event.core.ts);
        }
        E::MessageRedacted { message, .. } => {
            if let Some(m) = state.messages.get_mut(message) {
                m.redacted = true;
                m.reactions.clear();
            }
        }
        E::ReactionAdded { message, emoji } => {
            if let Some(m) = state.messages.get_mut(message) {
                m.reactions.entry(emoji.clone()).or_default().insert(sender.clone());
            }
        }
        E::ReactionRemoved { message, emoji } => {
            if let Some(m) = state.messages.get_mut(message)
                && let Some(users) = m.reactions.get_mut(emoji)
            {
                users.remove(sender);
                if users.is_empty() {
                    m.reactions.remove(emoji);
                }
            }
        }
        E::MessagePinned { message } | E::MessageUnpinned { message } => {
            let pinned = matches!(event.content(), E::MessagePinned { .. });
            if let Some(m) = state.messages.get_mut(message) {
                m.pinned = pinned;
            }
        }
        body @ (E::VoiceJoined { .. }
        | E::VoiceLeft { .. }
        | E::VoiceTrack { .. }
        | E::VoiceSelf { .. }
        | E::VoiceServerMuted { .. }
        | E::VoiceDisconnected { .. }
        | E::VoiceMoved { .. }) => crate::voice::evolve(&mut state.voice, sender, event.core.ts, body),
        _ => {}
    }
    state.seals.note(&event.core);
    state.version = event.core.seq;
    state.head = Some(event.id);
    state
}

impl ChannelState {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> ChannelState {
        events.into_iter().fold(ChannelState::default(), evolve)
    }

    /// The target of a report about a message in this channel.
    pub fn report_target(&self, channel: ChannelId, message: MessageId) -> Result<ReportTarget, DomainError> {
        let m = self.messages.get(&message).ok_or_else(|| DomainError::not_found("message", message))?;
        Ok(ReportTarget::Message { channel, message, author: m.author.clone() })
    }
}

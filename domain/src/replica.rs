//! What a replica checks of each event a guild's owner sends it, beyond its signatures: that
//! the owner's own rules allow it, against the replica's copy of the guild.
//!
//! There is one mechanism: the event names the command that made it. A replica turns the
//! event back into that command, decides it with the same `decide` the owner ran, as the
//! event's sender at the event's time, and accepts the event only if the decision gives the
//! same body. So a replica needs no second copy of the rules, and an owner hub cannot append
//! what its rules refuse (a post by a banned member, a role granted by someone without the
//! right, a message in another stream's place) without every replica refusing it.
//!
//! Three cases stretch that:
//! - **Erased bodies.** A backfilled event may arrive without its full body. The command is
//!   rebuilt from the redacted form, with a stand-in for the text a person wrote, and the
//!   decision is compared in its redacted form.
//! - **A channel's overwrites**, decided with its creation, are checked on the channel as just
//!   created ([`guild::decide_opening_overwrite`]).
//! - **Hub operators** act in guilds they are not members of. Who is an operator is written
//!   on the owner hub's own stream, which never travels, so the owner's word is taken for its
//!   own users: an event by a user of the owner hub that `decide` refuses is checked with
//!   `decide_as_operator`.

use crate::body::{EventBody, Place};
use crate::channel::{self, ChannelState, MessageCommand};
use crate::error::DomainError;
use crate::event::Event;
use crate::guild::{self, Guild, GuildCommand};
use crate::ids::{ChannelId, ServerName, Timestamp, UserId};
use crate::permissions::Overwrite;
use crate::proposal::{self, Seal, SealError};
use crate::voice::{self, VoiceCommand};

/// Why a replica refuses an event.
#[derive(Debug, thiserror::Error)]
pub enum Unauthorised {
    #[error("a {stream} stream does not take `{kind}` events")]
    WrongStream { stream: &'static str, kind: &'static str },
    #[error("a guild's stream starts with its one `guild.created`")]
    Start,
    #[error("the guild's create event says it was created by {claimed}, but it was sent by {actual}")]
    Creator { claimed: String, actual: String },
    #[error("the guild's rules refuse it: {0}")]
    Rules(DomainError),
    #[error("the guild's rules decide it differently: {0}")]
    Differs(String),
    #[error("its proposal does not hold: {0}")]
    Seal(#[from] SealError),
}

/// Checks an event of a guild's own stream against the guild as it stood before it.
pub fn check_guild_event(guild: &Guild, event: &Event) -> Result<(), Unauthorised> {
    let core = &event.core;
    let body = event.content();
    proposal::admit(core, &guild.seals)?;
    if core.seq == 1 || matches!(body, EventBody::GuildCreated(_)) {
        let EventBody::GuildCreated(created) = body else { return Err(Unauthorised::Start) };
        if core.seq != 1 {
            return Err(Unauthorised::Start);
        }
        if created.creator != core.sender || created.origin != core.origin {
            return Err(Unauthorised::Creator {
                claimed: format!("{} of {}", created.creator, created.origin),
                actual: format!("{} of {}", core.sender, core.origin),
            });
        }
        return Ok(());
    }
    let command =
        guild_command(body, core.ts).ok_or(Unauthorised::WrongStream { stream: "guild", kind: body.kind() })?;
    let decided = match guild::decide(guild, &core.sender, &command, core.ts) {
        Ok(decided) => decided,
        Err(refused) => {
            let opening = match body {
                EventBody::OverwriteSet { place: Place::Channel(_), target, allow, deny } => {
                    let overwrite = Overwrite { allow: *allow, deny: *deny };
                    guild::decide_opening_overwrite(guild, &core.sender, target, overwrite, core.ts).ok()
                }
                _ => None,
            };
            let operator = || {
                (core.sender.server() == core.origin)
                    .then(|| guild::decide_as_operator(guild, &command, core.ts).ok())
                    .flatten()
            };
            opening.or_else(operator).ok_or(Unauthorised::Rules(refused))?
        }
    };
    same(&decided, event)
}

/// Checks an event of a channel's stream against the guild and the channel as they stand.
pub fn check_channel_event(
    guild: &Guild,
    channel: ChannelId,
    state: &ChannelState,
    event: &Event,
) -> Result<(), Unauthorised> {
    let core = &event.core;
    let body = event.content();
    proposal::admit(core, &state.seals)?;
    if let Some(command) = voice_command(body) {
        let decided = voice::decide(guild, channel, &state.voice, &core.sender, &command, core.ts)
            .map_err(Unauthorised::Rules)?;
        return same(&decided, event);
    }
    let command = message_command(body).ok_or(Unauthorised::WrongStream { stream: "channel", kind: body.kind() })?;
    let decide = |cmd: &MessageCommand| channel::decide(guild, channel, state, &core.sender, cmd, core.ts);
    let decided = match (decide(&command), &command) {
        (Ok(decided), _) => decided,
        // A redaction not by its author nor by a moderator may be a ban's purge.
        (Err(refused), MessageCommand::Redact { message, reason }) => {
            decide(&MessageCommand::Purge { message: *message, reason: reason.clone() })
                .map_err(|_| Unauthorised::Rules(refused))?
        }
        (Err(refused), _) => return Err(Unauthorised::Rules(refused)),
    };
    same(&decided, event)
}

/// Whether the decision gives the event's body: in full when the event has it, else in the
/// redacted form its id covers.
fn same(decided: &[EventBody], event: &Event) -> Result<(), Unauthorised> {
    let matches = match (decided, &event.body) {
        ([one], Some(body)) => one == body,
        ([one], None) => one.redacted() == event.core.redacted,
        _ => false,
    };
    if matches {
        return Ok(());
    }
    let gives: Vec<&str> = decided.iter().map(EventBody::kind).collect();
    Err(Unauthorised::Differs(format!("they give {gives:?} with other fields, not this `{}`", event.content().kind())))
}

/// Stands in for text a person wrote that was erased: the checks need some text, and what
/// it said is not theirs to judge.
const ERASED_TEXT: &str = "(erased)";

fn written(text: &str) -> String {
    if text.is_empty() { ERASED_TEXT.to_owned() } else { text.to_owned() }
}

/// The guild command that makes `body`, if it is a guild stream's kind.
fn guild_command(body: &EventBody, ts: Timestamp) -> Option<GuildCommand> {
    use EventBody as E;
    use GuildCommand as C;
    let reason = |r: &String| r.clone();
    Some(match body {
        E::GuildUpdated { name, description } => {
            C::UpdateGuild { name: name.clone(), description: description.clone() }
        }
        E::GuildArchived { reason: r } => C::ArchiveGuild { reason: reason(r) },
        E::GuildDeleted { reason: r } => C::DeleteGuild { reason: reason(r) },
        E::CategoryCreated { category, name, .. } => C::CreateCategory { category: *category, name: name.clone() },
        E::CategoryUpdated { category, name, position } => {
            C::UpdateCategory { category: *category, name: Some(name.clone()), position: Some(*position) }
        }
        E::CategoryDeleted { category } => C::DeleteCategory { category: *category },
        E::ChannelCreated { channel, name, kind, category, topic, .. } => C::CreateChannel {
            channel: *channel,
            name: name.clone(),
            kind: *kind,
            category: *category,
            topic: topic.clone(),
            overwrites: Vec::new(),
        },
        E::ThreadStarted { thread, parent, message, name } => {
            C::StartThread { thread: *thread, parent: *parent, message: *message, name: name.clone() }
        }
        E::ChannelUpdated { channel, name, topic } => {
            C::UpdateChannel { channel: *channel, name: Some(name.clone()), topic: Some(topic.clone()) }
        }
        E::ChannelMoved { channel, category, position } => {
            C::MoveChannel { channel: *channel, category: *category, position: Some(*position) }
        }
        E::ChannelDeleted { channel } => C::DeleteChannel { channel: *channel },
        E::SlowModeSet { channel, seconds } => C::SetSlowMode { channel: *channel, seconds: *seconds },
        E::UserLimitSet { channel, limit } => C::SetUserLimit { channel: *channel, limit: *limit },
        E::ChannelArchived { channel, reason: r } => C::ArchiveChannel { channel: *channel, reason: reason(r) },
        E::ChannelLocked { channel, locked, reason: r } => {
            C::LockChannel { channel: *channel, locked: *locked, reason: reason(r) }
        }
        E::OverwriteSet { place, target, allow, deny } => {
            C::SetOverwrite { place: *place, target: target.clone(), allow: *allow, deny: *deny }
        }
        E::RoleCreated { role, name, permissions, .. } => {
            C::CreateRole { role: *role, name: name.clone(), permissions: *permissions }
        }
        E::RoleUpdated { role, name, permissions } => {
            C::UpdateRole { role: *role, name: Some(name.clone()), permissions: Some(*permissions) }
        }
        E::RolesReordered { order } => C::ReorderRoles { order: order.clone() },
        E::RoleDeleted { role } => C::DeleteRole { role: *role },
        E::RoleAssigned { user, role, reason: r } => {
            C::AssignRole { user: user.clone(), role: *role, reason: reason(r) }
        }
        E::RoleUnassigned { user, role, reason: r } => {
            C::UnassignRole { user: user.clone(), role: *role, reason: reason(r) }
        }
        E::InviteCreated { code, max_uses, expires_at } => {
            C::CreateInvite { code: code.clone(), max_uses: *max_uses, expires_at: *expires_at }
        }
        E::InviteRevoked { code } => C::RevokeInvite { code: code.clone() },
        E::MemberJoined { invite: Some(code), .. } => C::Join { invite: code.clone() },
        E::MemberJoined { user, invite: None } => C::AddMember { user: user.clone() },
        E::MemberLeft { .. } => C::Leave,
        E::MemberKicked { user, reason: r } => C::Kick { user: user.clone(), reason: reason(r) },
        E::MemberBanned { user, reason: r, purge_since } => C::Ban {
            user: user.clone(),
            reason: reason(r),
            // The window back from the ban's time. One that is no whole number of seconds,
            // or too long, decides differently and is refused.
            purge_seconds: purge_since.map_or(0, |since| {
                let back = ts.as_millis().saturating_sub(since.as_millis()).div_ceil(1000);
                u32::try_from(back).unwrap_or(u32::MAX)
            }),
        },
        E::MemberUnbanned { user, reason: r } => C::Unban { user: user.clone(), reason: reason(r) },
        E::MemberTimedOut { user, until, reason: r } => {
            C::Timeout { user: user.clone(), until: *until, reason: reason(r) }
        }
        E::TimeoutRemoved { user, reason: r } => C::RemoveTimeout { user: user.clone(), reason: reason(r) },
        E::NicknameSet { user, nickname } => C::SetNickname { user: user.clone(), nickname: nickname.clone() },
        E::ReportFiled { report, target, reason: r } => {
            C::FileReport { report: *report, target: target.clone(), reason: reason(r) }
        }
        E::ReportAssigned { report, assignee } => C::AssignReport { report: *report, assignee: assignee.clone() },
        E::ReportResolved { report, action, reason: r } => {
            C::ResolveReport { report: *report, action: *action, reason: reason(r) }
        }
        _ => return None,
    })
}

/// The message command that makes `body`, if it is a channel stream's kind. A redaction is
/// read as the author's or a moderator's; the caller tries a ban's purge next.
fn message_command(body: &EventBody) -> Option<MessageCommand> {
    use EventBody as E;
    use MessageCommand as C;
    Some(match body {
        E::MessagePosted { text, reply_to, mentions, mentions_everyone, mention_roles, attachments, extra } => {
            C::Post {
                extra: extra.clone(),
                mention_roles: mention_roles.clone(),
                text: written(text),
                reply_to: *reply_to,
                mentions: mentions.clone(),
                mentions_everyone: *mentions_everyone,
                attachments: attachments.clone(),
            }
        }
        E::MessageEdited { message, text } => C::Edit { message: *message, text: written(text) },
        E::MessageRedacted { message, reason } => C::Redact { message: *message, reason: reason.clone() },
        E::ReactionAdded { message, emoji } => C::React { message: *message, emoji: emoji.clone() },
        E::ReactionRemoved { message, emoji } => C::Unreact { message: *message, emoji: emoji.clone() },
        E::MessagePinned { message } => C::Pin { message: *message },
        E::MessageUnpinned { message } => C::Unpin { message: *message },
        _ => return None,
    })
}

/// The voice command that makes `body`, if it is a voice event.
fn voice_command(body: &EventBody) -> Option<VoiceCommand> {
    use EventBody as E;
    use VoiceCommand as C;
    Some(match body {
        E::VoiceJoined { session } => C::Join { session: session.clone() },
        E::VoiceLeft { session } => C::Leave { session: Some(session.clone()) },
        E::VoiceTrack { track, source, published, muted } => {
            C::Track { track: track.clone(), source: *source, published: *published, muted: *muted }
        }
        E::VoiceSelf { muted, deafened } => C::SetSelf { muted: *muted, deafened: *deafened },
        E::VoiceServerMuted { user, muted, deafened, reason } => {
            C::ServerMute { user: user.clone(), muted: *muted, deafened: *deafened, reason: reason.clone() }
        }
        E::VoiceDisconnected { user, reason } => C::Disconnect { user: user.clone(), reason: reason.clone() },
        E::VoiceMoved { user, to, reason } => C::Move { user: user.clone(), to: *to, reason: reason.clone() },
        _ => return None,
    })
}

/// The owner's decision on a proposal for its guild's own stream: the command `body` names,
/// decided as `sender` at `now`, must give exactly `body`, and the seal must be fresh. What
/// it returns is what to append; a replica checks the same when the event reaches it.
pub fn decide_proposed_guild(
    guild: &Guild,
    sender: &UserId,
    origin: &ServerName,
    body: &EventBody,
    seal: &Seal,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    proposal::admit_parts(sender, origin, now, Some(seal), &guild.seals).map_err(refused_seal)?;
    let command = guild_command(body, now).ok_or_else(|| not_proposable(body, "guild"))?;
    let decided = guild::decide(guild, sender, &command, now)?;
    exactly(decided, body)
}

/// [`decide_proposed_guild`] for a channel's stream.
#[allow(clippy::too_many_arguments)]
pub fn decide_proposed_message(
    guild: &Guild,
    channel: ChannelId,
    state: &ChannelState,
    sender: &UserId,
    origin: &ServerName,
    body: &EventBody,
    seal: &Seal,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    proposal::admit_parts(sender, origin, now, Some(seal), &state.seals).map_err(refused_seal)?;
    let command = message_command(body).ok_or_else(|| not_proposable(body, "channel"))?;
    let decided = channel::decide(guild, channel, state, sender, &command, now)?;
    exactly(decided, body)
}

fn refused_seal(e: SealError) -> DomainError {
    DomainError::InvalidInput { field: "proposal", reason: e.to_string() }
}

fn not_proposable(body: &EventBody, stream: &str) -> DomainError {
    DomainError::InvalidInput {
        field: "body",
        reason: format!("a member of another hub cannot propose `{}` on a {stream} stream", body.kind()),
    }
}

/// The decision, if it is exactly the proposed body.
fn exactly(decided: Vec<EventBody>, body: &EventBody) -> Result<Vec<EventBody>, DomainError> {
    match decided.as_slice() {
        [one] if one == body => Ok(decided),
        _ => Err(DomainError::InvalidInput {
            field: "body",
            reason: format!(
                "the guild's rules make {} event(s) of this command, not the one proposed (`{}`); propose what the command decides",
                decided.len(),
                body.kind()
            ),
        }),
    }
}

//! Voice channels: who is in one, as the SFU reports it and as moderators change it.
//!
//! OpenGuild carries no media; LiveKit does. What happens in a voice channel's room is
//! recorded on the channel's stream like its messages: the SFU's reports (a participant
//! joined, left, published a track) are the participant's own events, signed by the hub, and
//! so are the participant's own mute and deafen; a moderator's server mute, disconnect and
//! move are the moderator's events. The seats  are folded from them (`channel::ChannelState::voice`).
//!
//! [`may_join`] is the one gate: a ticket is issued only if it passes, and a participant the
//! SFU reports is seated only if it still passes then (the caller removes one it refuses
//! from the room). So losing the right between ticket and join keeps someone out.

use std::collections::BTreeMap;

use crate::body::{ChannelKind, EventBody, TrackSource};
use crate::error::{DomainError, Refusal};
use crate::guild::Guild;
use crate::ids::{ChannelId, Timestamp, UserId};
use crate::permissions::Permissions;
use crate::validate;

/// Who is in a voice channel's room (the channel aggregate's `voice`).
pub type Seats = BTreeMap<UserId, Seat>;

/// Someone in a voice channel's room.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Seat {
    /// The SFU's participant id of this connection.
    pub session: String,
    pub joined_at: Timestamp,
    pub self_muted: bool,
    pub self_deafened: bool,
    pub server_muted: bool,
    pub server_deafened: bool,
    /// Published tracks by the SFU's track id: their source and whether muted.
    pub tracks: BTreeMap<String, (TrackSource, bool)>,
}

impl Seat {
    /// Muted, by themselves or by a moderator.
    pub fn muted(&self) -> bool {
        self.self_muted || self.server_muted
    }

    pub fn deafened(&self) -> bool {
        self.self_deafened || self.server_deafened
    }

    /// Whether a track of `source` is published and not muted.
    pub fn publishing(&self, source: TrackSource) -> bool {
        self.tracks.values().any(|(s, muted)| *s == source && !muted)
    }

    /// The ids of the published microphone tracks.
    pub fn microphones(&self) -> impl Iterator<Item = &str> {
        self.tracks.iter().filter(|(_, (s, _))| *s == TrackSource::Microphone).map(|(id, _)| id.as_str())
    }
}

/// A command on a voice channel's stream, by `actor`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum VoiceCommand {
    /// The SFU reports `actor` in the room as participant `session`.
    Join {
        session: String,
    },
    /// `actor` left the room (`None`: whatever session they had).
    Leave {
        session: Option<String>,
    },
    /// The SFU reports a track `actor` published, changed or unpublished.
    Track {
        track: String,
        source: TrackSource,
        published: bool,
        muted: bool,
    },
    /// `actor`'s own mute and deafen.
    SetSelf {
        muted: bool,
        deafened: bool,
    },
    ServerMute {
        user: UserId,
        muted: bool,
        deafened: bool,
        reason: String,
    },
    Disconnect {
        user: UserId,
        reason: String,
    },
    Move {
        user: UserId,
        to: ChannelId,
        reason: String,
    },
}

/// What `user` may do in voice channel `channel` now, if they may join it at all: the
/// permissions that shape their access token. Refused, with why, for someone who is not a
/// member, is banned or timed out, lacks CONNECT, in an archived channel, or when the channel
/// is full (members with MOVE_MEMBERS pass a full channel, as on Discord).
pub fn may_join(
    guild: &Guild,
    channel: ChannelId,
    seats: &Seats,
    user: &UserId,
    now: Timestamp,
) -> Result<Permissions, DomainError> {
    guild.exists()?;
    let c = guild.channel(&channel)?;
    if c.kind != ChannelKind::Voice {
        return Err(DomainError::invalid("channel", format!("{} is not a voice channel", c.name)));
    }
    if !guild.members.contains_key(user) {
        return Err(DomainError::Forbidden(if guild.bans.contains_key(user) {
            Refusal::Banned
        } else {
            Refusal::NotMember
        }));
    }
    if guild.archived || c.archived {
        return Err(DomainError::Forbidden(Refusal::Archived));
    }
    if let Some(until) = guild.timed_out_until(user, now) {
        return Err(DomainError::TimedOut { until });
    }
    let perms = guild.channel_permissions(user, channel, now);
    if !perms.contains(Permissions::VIEW_CHANNEL) {
        return Err(DomainError::missing(Permissions::VIEW_CHANNEL));
    }
    if !perms.contains(Permissions::CONNECT) {
        return Err(DomainError::missing(Permissions::CONNECT));
    }
    let others = seats.keys().filter(|u| *u != user).count();
    if c.user_limit > 0 && others >= c.user_limit as usize && !perms.contains(Permissions::MOVE_MEMBERS) {
        return Err(DomainError::Forbidden(Refusal::ChannelFull { limit: c.user_limit }));
    }
    Ok(perms)
}

/// Decides a voice command in `channel` of `guild`. What the SFU reports of someone already
/// recorded so (a join twice, a leave of someone gone) decides nothing, so webhooks and the
/// reconciliation pass can repeat themselves.
pub fn decide(
    guild: &Guild,
    channel: ChannelId,
    seats: &Seats,
    actor: &UserId,
    cmd: &VoiceCommand,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    use VoiceCommand as C;
    let seat = seats.get(actor);
    let body = match cmd {
        C::Join { session } => {
            if seat.is_some_and(|s| s.session == *session) {
                return Ok(Vec::new());
            }
            may_join(guild, channel, seats, actor, now)?;
            EventBody::VoiceJoined { session: validate::text("session", session, 128)? }
        }
        // Always allowed: leaving needs no right, and a banned member's leave is recorded too.
        C::Leave { session } => match seat {
            Some(s) if session.as_ref().is_none_or(|wanted| *wanted == s.session) => {
                EventBody::VoiceLeft { session: s.session.clone() }
            }
            _ => return Ok(Vec::new()),
        },
        C::Track { track, source, published, muted } => {
            let Some(seat) = seat else { return Ok(Vec::new()) };
            let known = seat.tracks.get(track);
            let unchanged = match known {
                Some((_, was_muted)) => *published && was_muted == muted,
                None => !*published,
            };
            if unchanged {
                return Ok(Vec::new());
            }
            EventBody::VoiceTrack {
                track: validate::text("track", track, 128)?,
                source: *source,
                published: *published,
                muted: *muted,
            }
        }
        C::SetSelf { muted, deafened } => {
            let seat = seat.ok_or_else(not_in_voice)?;
            if seat.self_muted == *muted && seat.self_deafened == *deafened {
                return Ok(Vec::new());
            }
            EventBody::VoiceSelf { muted: *muted, deafened: *deafened }
        }
        C::ServerMute { user, muted, deafened, reason } => {
            let target = seated(seats, user)?;
            let perms = moderator(guild, channel, actor, now)?;
            if target.server_muted != *muted && !perms.contains(Permissions::MUTE_MEMBERS) {
                return Err(DomainError::missing(Permissions::MUTE_MEMBERS));
            }
            if target.server_deafened != *deafened && !perms.contains(Permissions::DEAFEN_MEMBERS) {
                return Err(DomainError::missing(Permissions::DEAFEN_MEMBERS));
            }
            if target.server_muted == *muted && target.server_deafened == *deafened {
                return Err(DomainError::conflict("they are already server-muted and deafened as asked"));
            }
            EventBody::VoiceServerMuted {
                user: user.clone(),
                muted: *muted,
                deafened: *deafened,
                reason: validate::reason(reason)?,
            }
        }
        C::Disconnect { user, reason } => {
            seated(seats, user)?;
            require_move(guild, channel, actor, now)?;
            EventBody::VoiceDisconnected { user: user.clone(), reason: validate::reason(reason)? }
        }
        C::Move { user, to, reason } => {
            seated(seats, user)?;
            require_move(guild, channel, actor, now)?;
            let dest = guild.channel(to)?;
            if dest.kind != ChannelKind::Voice || *to == channel {
                return Err(DomainError::invalid("to", "move them to another voice channel"));
            }
            if !guild.channel_permissions(user, *to, now).contains(Permissions::CONNECT) {
                return Err(DomainError::invalid(
                    "to",
                    format!("{user} may not connect to {}; they cannot be moved there", dest.name),
                ));
            }
            EventBody::VoiceMoved { user: user.clone(), to: *to, reason: validate::reason(reason)? }
        }
    };
    Ok(vec![body])
}

fn not_in_voice() -> DomainError {
    DomainError::conflict("you are not in this voice channel; join it first")
}

fn seated<'a>(seats: &'a Seats, user: &UserId) -> Result<&'a Seat, DomainError> {
    seats.get(user).ok_or_else(|| DomainError::not_found("participant in this voice channel", user))
}

/// A moderator's permissions in the channel: a member, not timed out.
fn moderator(guild: &Guild, channel: ChannelId, actor: &UserId, now: Timestamp) -> Result<Permissions, DomainError> {
    guild.exists()?;
    guild.channel(&channel)?;
    if !guild.members.contains_key(actor) {
        return Err(DomainError::Forbidden(Refusal::NotMember));
    }
    if let Some(until) = guild.timed_out_until(actor, now) {
        return Err(DomainError::TimedOut { until });
    }
    Ok(guild.channel_permissions(actor, channel, now))
}

fn require_move(guild: &Guild, channel: ChannelId, actor: &UserId, now: Timestamp) -> Result<(), DomainError> {
    if moderator(guild, channel, actor, now)?.contains(Permissions::MOVE_MEMBERS) {
        Ok(())
    } else {
        Err(DomainError::missing(Permissions::MOVE_MEMBERS))
    }
}

/// Applies a voice event to the channel's seats (called by the channel stream's `evolve`).
pub(crate) fn evolve(voice: &mut Seats, sender: &UserId, ts: Timestamp, body: &EventBody) {
    use EventBody as E;
    match body {
        E::VoiceJoined { session } => {
            voice.insert(
                sender.clone(),
                Seat {
                    session: session.clone(),
                    joined_at: ts,
                    self_muted: false,
                    self_deafened: false,
                    server_muted: false,
                    server_deafened: false,
                    tracks: BTreeMap::new(),
                },
            );
        }
        E::VoiceLeft { session } if voice.get(sender).is_some_and(|s| s.session == *session) => {
            voice.remove(sender);
        }
        E::VoiceTrack { track, source, published, muted } => {
            if let Some(seat) = voice.get_mut(sender) {
                if *published {
                    seat.tracks.insert(track.clone(), (*source, *muted));
                } else {
                    seat.tracks.remove(track);
                }
            }
        }
        E::VoiceSelf { muted, deafened } => {
            if let Some(seat) = voice.get_mut(sender) {
                seat.self_muted = *muted;
                seat.self_deafened = *deafened;
            }
        }
        E::VoiceServerMuted { user, muted, deafened, .. } => {
            if let Some(seat) = voice.get_mut(user) {
                seat.server_muted = *muted;
                seat.server_deafened = *deafened;
            }
        }
        E::VoiceDisconnected { user, .. } | E::VoiceMoved { user, .. } => {
            voice.remove(user);
        }
        _ => {}
    }
}

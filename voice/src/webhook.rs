//! LiveKit's webhooks: checked with `livekit-api`'s receiver (the `Authorization` JWT signed
//! with the API secret, and the body's SHA-256 in it), then against replays (each event id
//! once, and none older than [`WINDOW_SECONDS`]), then read as a [`Report`] of who is where.

use std::collections::HashMap;
use std::sync::Mutex;

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use livekit_protocol as proto;
use openguild_domain::body::TrackSource;
use openguild_domain::{ChannelId, UserId};

use crate::{VoiceSettings, channel_of};

/// How old (or how far ahead of this hub's clock) a webhook may be.
pub const WINDOW_SECONDS: i64 = 300;
/// The most event ids remembered; past it, ids older than the window are forgotten first.
const REMEMBERED: usize = 65_536;

/// Why a webhook is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the webhook has no Authorization header; LiveKit signs every webhook with the API key ([voice] api_key)")]
    Unsigned,
    #[error("the webhook's signature does not verify ({0}); check that LiveKit's webhook api_key is [voice] api_key")]
    Signature(String),
    #[error("the webhook's body does not match the hash it was signed with")]
    Tampered,
    #[error("the webhook's body is not a LiveKit webhook event: {0}")]
    Body(String),
    #[error("the webhook was sent {age} s from now; only {WINDOW_SECONDS} s either way are taken (check the clocks)")]
    Stale { age: i64 },
    #[error("the webhook {0} was received before; a replay is refused")]
    Replayed(String),
    #[error("the webhook has no event id")]
    NoId,
}

/// Checks webhooks and remembers the ids it took.
pub struct Webhooks {
    receiver: WebhookReceiver,
    seen: Mutex<HashMap<String, i64>>,
}

impl Webhooks {
    pub fn new(settings: &VoiceSettings) -> Self {
        let verifier = TokenVerifier::with_api_key(&settings.api_key, settings.api_secret.expose());
        Self { receiver: WebhookReceiver::new(verifier), seen: Mutex::new(HashMap::new()) }
    }

    /// The event, if `body` was signed by `authorization` with our key, is fresh at
    /// `now_secs` and was not received before.
    pub fn receive(
        &self,
        body: &str,
        authorization: Option<&str>,
        now_secs: i64,
    ) -> Result<proto::WebhookEvent, Refused> {
        let auth = authorization.map(str::trim).filter(|a| !a.is_empty()).ok_or(Refused::Unsigned)?;
        // LiveKit sends the bare token; some proxies and tools add the scheme.
        let auth = auth.strip_prefix("Bearer ").unwrap_or(auth);
        let event = self.receiver.receive(body, auth).map_err(|e| match e {
            WebhookError::InvalidSignature => Refused::Tampered,
            WebhookError::InvalidData(e) => Refused::Body(e.to_string()),
            other => Refused::Signature(other.to_string()),
        })?;
        if event.id.is_empty() {
            return Err(Refused::NoId);
        }
        let age = now_secs - event.created_at;
        if age.abs() > WINDOW_SECONDS {
            return Err(Refused::Stale { age });
        }
        if self.seen.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&event.id) {
            return Err(Refused::Replayed(event.id));
        }
        Ok(event)
    }

    /// Remembers a webhook as taken: sent again, it is a replay. Called once it is recorded,
    /// so one that failed to be recorded is taken when LiveKit sends it again.
    pub fn remember(&self, event: &proto::WebhookEvent, now_secs: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            // Older ids cannot come back: the window refuses them anyway.
            seen.retain(|_, at| now_secs - *at <= WINDOW_SECONDS);
        }
        seen.insert(event.id.clone(), event.created_at);
    }
}

/// What a webhook says happened in one of our rooms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Joined {
        channel: ChannelId,
        user: UserId,
        session: String,
    },
    Left {
        channel: ChannelId,
        user: UserId,
        session: String,
    },
    Track {
        channel: ChannelId,
        user: UserId,
        track: String,
        source: TrackSource,
        published: bool,
        muted: bool,
    },
    /// The room closed: nobody is in it any more.
    Finished {
        channel: ChannelId,
    },
    /// Not about who is in one of our rooms (another room, egress, …), with why.
    Ignored(String),
}

/// Reads a checked webhook event.
pub fn report(event: &proto::WebhookEvent) -> Report {
    let Some(room) = event.room.as_ref() else { return Report::Ignored(format!("{}: no room", event.event)) };
    let Some(channel) = channel_of(&room.name) else {
        return Report::Ignored(format!("room {:?} is not a voice channel of this hub", room.name));
    };
    if event.event == "room_finished" {
        return Report::Finished { channel };
    }
    let Some(p) = event.participant.as_ref() else {
        return Report::Ignored(format!("{}: no participant", event.event));
    };
    let Ok(user) = p.identity.parse::<UserId>() else {
        return Report::Ignored(format!("participant {:?} is not a user id", p.identity));
    };
    let session = p.sid.clone();
    match event.event.as_str() {
        "participant_joined" => Report::Joined { channel, user, session },
        "participant_left" | "participant_connection_aborted" => Report::Left { channel, user, session },
        kind @ ("track_published" | "track_unpublished") => {
            let Some(t) = event.track.as_ref() else { return Report::Ignored(format!("{kind}: no track")) };
            Report::Track {
                channel,
                user,
                track: t.sid.clone(),
                source: source(t.source),
                published: kind == "track_published",
                muted: t.muted,
            }
        }
        other => Report::Ignored(format!("{other} is not about who is in the room")),
    }
}

/// A track source as the domain names it.
pub fn source(raw: i32) -> TrackSource {
    match proto::TrackSource::try_from(raw) {
        Ok(proto::TrackSource::Microphone) => TrackSource::Microphone,
        Ok(proto::TrackSource::Camera) => TrackSource::Camera,
        Ok(proto::TrackSource::ScreenShare) => TrackSource::ScreenShare,
        Ok(proto::TrackSource::ScreenShareAudio) => TrackSource::ScreenShareAudio,
        _ => TrackSource::Unknown,
    }
}

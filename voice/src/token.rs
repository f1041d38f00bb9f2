//! Access tokens: a member's effective permissions in a voice channel, as LiveKit grants.
//!
//! | permission | grant |
//! | --- | --- |
//! | CONNECT | `roomJoin` for the channel's room, `canSubscribe` |
//! | SPEAK | `canPublish` with source `microphone` |
//! | STREAM | `canPublish` with sources `camera`, `screen_share`, `screen_share_audio` |
//! | MUTE_MEMBERS, DEAFEN_MEMBERS, MOVE_MEMBERS | named in the `openguild.moderation` attribute |
//!
//! `roomAdmin` is never granted: it would let a client call the RoomService itself, around
//! OpenGuild, and moderation is to be signed and audited. Moderators act through OpenGuild,
//! which calls the RoomService; the attribute only lets clients show who may.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use openguild_domain::{ChannelId, Permissions, UserId};

use crate::{VoiceError, VoiceSettings, room_of};

/// The attribute naming a participant's moderation powers (comma-separated permission names).
pub const MODERATION_ATTRIBUTE: &str = "openguild.moderation";

/// What a client needs to join a voice channel's room.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// Where to connect: the hub's LiveKit.
    pub url: String,
    /// The LiveKit access token (a JWT signed with the API secret).
    pub token: String,
    /// When the token stops admitting new connections, in milliseconds since the epoch.
    pub expires_at_ms: u64,
    pub room: String,
}

/// The publish sources `perms` allow, as LiveKit names them.
pub fn sources(perms: Permissions) -> Vec<&'static str> {
    let mut out = Vec::new();
    if perms.contains(Permissions::SPEAK) {
        out.push("microphone");
    }
    if perms.contains(Permissions::STREAM) {
        out.extend(["camera", "screen_share", "screen_share_audio"]);
    }
    out
}

/// The moderation powers `perms` hold in voice.
pub fn powers(perms: Permissions) -> Vec<&'static str> {
    (perms & (Permissions::MUTE_MEMBERS | Permissions::DEAFEN_MEMBERS | Permissions::MOVE_MEMBERS)).names()
}

/// The grants of a member with `perms` in `room`.
pub fn grants(perms: Permissions, room: &str) -> VideoGrants {
    let sources: Vec<String> = sources(perms).into_iter().map(str::to_owned).collect();
    VideoGrants {
        room_join: perms.contains(Permissions::CONNECT),
        room: room.to_owned(),
        can_publish: Some(!sources.is_empty()),
        can_publish_sources: sources,
        can_subscribe: Some(true),
        can_publish_data: Some(false),
        can_update_own_metadata: Some(false),
        ..VideoGrants::default()
    }
}

/// Signs a ticket for `user` (shown as `name`) to `channel`'s room with `perms`, which the
/// caller has checked (`domain::voice::may_join`).
pub fn ticket(
    settings: &VoiceSettings,
    user: &UserId,
    name: &str,
    channel: ChannelId,
    perms: Permissions,
    now_ms: u64,
) -> Result<Ticket, VoiceError> {
    let room = room_of(channel);
    let ttl: Duration = settings.token_ttl();
    let powers = powers(perms).join(",");
    let mut token = AccessToken::with_api_key(&settings.api_key, settings.api_secret.expose())
        .with_identity(&user.to_string())
        .with_name(name)
        .with_ttl(ttl)
        .with_grants(grants(perms, &room));
    if !powers.is_empty() {
        token = token.with_attributes([(MODERATION_ATTRIBUTE, powers)]);
    }
    let token = token.to_jwt().map_err(|e| VoiceError::Token(e.to_string()))?;
    Ok(Ticket { url: settings.url.clone(), token, expires_at_ms: now_ms + ttl.as_millis() as u64, room })
}

//! The RoomService calls OpenGuild makes: removing, muting, re-permitting and moving
//! participants, and listing a room's participants to heal missed webhooks.

use livekit_api::services::room::{RemoveParticipantOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;
use openguild_domain::body::TrackSource;
use openguild_domain::{ChannelId, Permissions, UserId};

use crate::{VoiceError, VoiceSettings, room_of, token};

/// Someone LiveKit says is in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub user: UserId,
    pub session: String,
    /// Published tracks: id, source, muted.
    pub tracks: Vec<(String, TrackSource, bool)>,
}

/// The hub's LiveKit, as its RoomService.
pub struct Sfu {
    client: RoomClient,
}

impl Sfu {
    pub fn new(settings: &VoiceSettings) -> Self {
        let client = RoomClient::with_api_key(&settings.url, &settings.api_key, settings.api_secret.expose())
            .with_failover(false)
            .with_request_timeout(std::time::Duration::from_secs(5));
        Self { client }
    }

    /// Removes `user` from `channel`'s room and revokes every token issued to them before
    /// `revoke_before_ms`, so an unexpired token cannot bring them back. Someone not in the
    /// room is no error.
    pub async fn remove(&self, channel: ChannelId, user: &UserId, revoke_before_ms: u64) -> Result<(), VoiceError> {
        let options = RemoveParticipantOptions { revoke_token_ts: revoke_before_ms as i64 };
        let result = self.client.remove_participant_with_options(&room_of(channel), &user.to_string(), options).await;
        absent_is_fine(result, "RemoveParticipant")
    }

    /// Sets what `user` may publish and hear in `channel`'s room, from their permissions and
    /// a moderator's server mute and deafen.
    pub async fn set_permission(
        &self,
        channel: ChannelId,
        user: &UserId,
        perms: Permissions,
        server_muted: bool,
        server_deafened: bool,
    ) -> Result<(), VoiceError> {
        let permission = permission(perms, server_muted, server_deafened);
        let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
        let result = self.client.update_participant(&room_of(channel), &user.to_string(), options).await.map(|_| ());
        absent_is_fine(result, "UpdateParticipant")
    }

    /// Mutes (or unmutes) one of `user`'s published tracks.
    pub async fn mute_track(
        &self,
        channel: ChannelId,
        user: &UserId,
        track: &str,
        muted: bool,
    ) -> Result<(), VoiceError> {
        let result =
            self.client.mute_published_track(&room_of(channel), &user.to_string(), track, muted).await.map(|_| ());
        absent_is_fine(result, "MutePublishedTrack")
    }

    /// Moves `user` from `from`'s room to `to`'s without reconnecting.
    pub async fn move_to(&self, from: ChannelId, user: &UserId, to: ChannelId) -> Result<(), VoiceError> {
        let result = self.client.move_participant(&room_of(from), &user.to_string(), &room_of(to)).await;
        result.map_err(|e| service("MoveParticipant", e))
    }

    /// Who is in `channel`'s room (nobody, if the room does not exist).
    pub async fn participants(&self, channel: ChannelId) -> Result<Vec<Participant>, VoiceError> {
        let listed = match self.client.list_participants(&room_of(channel)).await {
            Ok(listed) => listed,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(service("ListParticipants", e)),
        };
        Ok(listed
            .into_iter()
            .filter_map(|p| {
                let user = p.identity.parse().ok()?;
                let tracks =
                    p.tracks.iter().map(|t| (t.sid.clone(), crate::webhook::source(t.source), t.muted)).collect();
                Some(Participant { user, session: p.sid, tracks })
            })
            .collect())
    }
}

/// The participant permission of someone with `perms`, as server-muted and deafened.
pub fn permission(perms: Permissions, server_muted: bool, server_deafened: bool) -> proto::ParticipantPermission {
    let sources: Vec<i32> = token::sources(perms)
        .into_iter()
        .filter(|s| !(server_muted && *s == "microphone"))
        .map(|s| match s {
            "microphone" => proto::TrackSource::Microphone,
            "camera" => proto::TrackSource::Camera,
            "screen_share" => proto::TrackSource::ScreenShare,
            _ => proto::TrackSource::ScreenShareAudio,
        } as i32)
        .collect();
    proto::ParticipantPermission {
        can_subscribe: !server_deafened,
        can_publish: !sources.is_empty(),
        can_publish_sources: sources,
        can_publish_data: false,
        ..Default::default()
    }
}

fn is_absent(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Twirp(ServerError::Twirp(code)) if code.code == "not_found")
}

fn absent_is_fine(result: Result<(), ServiceError>, call: &'static str) -> Result<(), VoiceError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(service(call, e)),
    }
}

fn service(call: &'static str, e: ServiceError) -> VoiceError {
    VoiceError::Service { call, why: e.to_string() }
}

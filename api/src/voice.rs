//! Voice channels on the hub's LiveKit: tickets to join (`joinVoice`), LiveKit's webhooks
//! (`POST /_openguild/voice/webhook`) turned into the participants' events, and the voice
//! worker, which makes the SFU follow what the events decide.
//!
//! Events are the truth; the SFU is made to agree with them. The webhook records who the SFU
//! says came and went, each a command through the one command path (`domain::voice`), and a
//! participant the domain refuses (banned since the ticket, channel now full) is removed from
//! the room at once. The worker follows the event store (checkpoint `voice`) and, for each
//! event, acts on the state as it now stands: a kick, ban or timeout, or any role or overwrite
//! change, re-checks everyone in the guild's voice rooms (removing, with their tokens revoked,
//! whoever may no longer join, and pushing new publish rights to whoever lost or gained SPEAK
//! or STREAM); a moderator's server mute, disconnect and move are carried out. On start, each
//! room's participants are listed and the seats healed (a missed webhook).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use livekit_protocol as proto;
use openguild_domain::voice::{Seat, VoiceCommand};
use openguild_domain::{
    ChannelId, ChannelKind, DomainError, EventBody, GuildId, Permissions, Refusal, StreamId, UserId,
};
use openguild_store::StoredEvent;
use openguild_voice::room::permission;
use openguild_voice::{Report, Sfu, Ticket, VoiceSettings, Webhooks};
use serde_json::json;

use crate::clock::now;
use crate::commands::CommandError;
use crate::errors::ApiError;
use crate::{Api, AppState};

/// The worker's checkpoint name.
const NAME: &str = "voice";
/// A moderator's act older than this when the worker reaches it (after a restart) is history:
/// the SFU is not told again.
const ACT_WITHIN_MS: u64 = 60_000;

/// The hub's LiveKit, when `[voice]` is set.
pub struct Voice {
    pub settings: VoiceSettings,
    webhooks: Webhooks,
    sfu: Sfu,
    /// The participant permission last sent for each (room, person), so a change that does
    /// not change what they may publish or hear sends nothing.
    pushed: Mutex<HashMap<(ChannelId, UserId), proto::ParticipantPermission>>,
}

impl Voice {
    pub fn new(settings: VoiceSettings) -> Self {
        Self {
            webhooks: Webhooks::new(&settings),
            sfu: Sfu::new(&settings),
            settings,
            pushed: Mutex::new(HashMap::new()),
        }
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, HashMap<(ChannelId, UserId), proto::ParticipantPermission>> {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The refusal of every voice request on a hub without `[voice]`.
pub fn unavailable() -> ApiError {
    ApiError::new(
        "VOICE_UNAVAILABLE",
        "voice is not set up on this hub: its operator sets [voice] url, api_key and api_secret \
         (docs/OPERATIONS.md, \"Voice: LiveKit and TURN\")",
    )
}

/// Starts the voice worker and the reconciliation pass (when voice is set up).
pub(crate) fn start(api: &Arc<Api>) {
    if api.voice.is_none() {
        return;
    }
    crate::worker::follow(Arc::downgrade(api), NAME, |api, e| Box::pin(api.voice_step(e)));
    let api = Arc::downgrade(api);
    tokio::spawn(async move {
        let Some(api) = api.upgrade() else { return };
        let channels = api.commands.voice_channels();
        let mut healed = 0;
        for (channel, _) in &channels {
            match api.reconcile(*channel).await {
                Ok(n) => healed += n,
                Err(e) => tracing::warn!(%channel, error = %e.message, "voice: reconciling the room failed"),
            }
        }
        tracing::info!(rooms = channels.len(), healed, "voice: rooms reconciled with LiveKit");
    });
}

impl Api {
    fn voice(&self) -> Result<&Voice, ApiError> {
        self.voice.as_ref().ok_or_else(unavailable)
    }

    /// A ticket for `me` to join voice channel `channel`: an access token whose grants are
    /// their permissions there, if they may join it now.
    pub async fn join_voice(&self, me: &UserId, channel: ChannelId) -> Result<Ticket, ApiError> {
        let voice = self.voice()?;
        let now = now();
        if let Err(hidden) = self.channel_view(me, channel).await {
            // A banned user is told so; anyone else who cannot see it, that it is not there.
            return Err(match self.commands.may_join_voice(me, channel, now).await {
                Err(CommandError::Domain(banned @ DomainError::Forbidden(Refusal::Banned))) => banned.into(),
                _ => hidden,
            });
        }
        let perms = self.commands.may_join_voice(me, channel, now).await?;
        Ok(openguild_voice::token::ticket(&voice.settings, me, me.handle(), channel, perms, now.as_millis())?)
    }

    /// `me` leaves `channel`'s room: recorded, and their connection (if any) closed.
    pub async fn leave_voice(&self, me: &UserId, channel: ChannelId) -> Result<u64, ApiError> {
        let voice = self.voice()?;
        self.channel_view(me, channel).await?;
        let done = self.commands.voice(me, channel, &VoiceCommand::Leave { session: None }, now()).await?;
        if let Err(e) = voice.sfu.remove(channel, me, 0).await {
            tracing::warn!(%channel, user = %me, error = %e, "voice: closing a leaver's connection failed");
        }
        Ok(done.position)
    }

    /// A voice command by `me` (their own state, or a moderator's act, which the worker
    /// carries out on the SFU).
    pub async fn voice_command(&self, me: &UserId, channel: ChannelId, cmd: VoiceCommand) -> Result<u64, ApiError> {
        self.voice()?;
        self.channel_view(me, channel).await?;
        Ok(self.commands.voice(me, channel, &cmd, now()).await?.position)
    }

    /// Records what a webhook reports.
    async fn take_report(&self, report: Report) -> Result<(), ApiError> {
        let voice = self.voice()?;
        let now = now();
        match report {
            Report::Joined { channel, user, session } => {
                match self.commands.voice(&user, channel, &VoiceCommand::Join { session }, now).await {
                    Ok(_) => Ok(()),
                    Err(CommandError::Domain(refused)) => {
                        tracing::info!(%channel, %user, why = %refused, "voice: the SFU admitted someone who may not join; removing them");
                        voice.sfu.remove(channel, &user, now.as_millis()).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Report::Left { channel, user, session } => {
                let leave = VoiceCommand::Leave { session: Some(session) };
                self.commands.voice(&user, channel, &leave, now).await?;
                Ok(())
            }
            Report::Track { channel, user, track, source, published, muted } => {
                let cmd = VoiceCommand::Track { track, source, published, muted };
                self.commands.voice(&user, channel, &cmd, now).await?;
                Ok(())
            }
            Report::Finished { channel } => {
                for (user, seat, _) in self.commands.voice_seats(channel, now).await? {
                    let leave = VoiceCommand::Leave { session: Some(seat.session) };
                    self.commands.voice(&user, channel, &leave, now).await?;
                }
                Ok(())
            }
            Report::Ignored(why) => {
                tracing::debug!(why, "voice: webhook ignored");
                Ok(())
            }
        }
    }

    /// Brings `channel`'s seats in line with who LiveKit says is in its room; returns how
    /// many changes that took.
    pub async fn reconcile(&self, channel: ChannelId) -> Result<usize, ApiError> {
        let voice = self.voice()?;
        let present = voice.sfu.participants(channel).await?;
        let seats: HashMap<UserId, Seat> =
            self.commands.voice_seats(channel, now()).await?.into_iter().map(|(u, s, _)| (u, s)).collect();
        let mut changes = 0;
        for p in &present {
            let seat = seats.get(&p.user).filter(|s| s.session == p.session);
            if seat.is_none() {
                let joined = Report::Joined { channel, user: p.user.clone(), session: p.session.clone() };
                self.take_report(joined).await?;
                changes += 1;
            }
            for (track, source, muted) in &p.tracks {
                if seat.and_then(|s| s.tracks.get(track)) != Some(&(*source, *muted)) {
                    let report = Report::Track {
                        channel,
                        user: p.user.clone(),
                        track: track.clone(),
                        source: *source,
                        published: true,
                        muted: *muted,
                    };
                    self.take_report(report).await?;
                    changes += 1;
                }
            }
        }
        for (user, seat) in &seats {
            if !present.iter().any(|p| p.user == *user && p.session == seat.session) {
                let left = Report::Left { channel, user: user.clone(), session: seat.session.clone() };
                self.take_report(left).await?;
                changes += 1;
            }
        }
        Ok(changes)
    }

    /// What one event asks of the SFU (nothing for most).
    async fn voice_step(self: &Arc<Self>, e: &StoredEvent) -> Result<(), ApiError> {
        use EventBody as E;
        if e.event.core.origin != self.server {
            return Ok(());
        }
        let recent = now().as_millis().saturating_sub(e.event.core.ts.as_millis()) <= ACT_WITHIN_MS;
        match (&e.event.core.stream, e.event.content()) {
            (
                StreamId::Guild(g),
                E::MemberKicked { user, .. }
                | E::MemberBanned { user, .. }
                | E::MemberTimedOut { user, .. }
                | E::MemberLeft { user }
                | E::RoleAssigned { user, .. }
                | E::RoleUnassigned { user, .. },
            ) => self.recheck_voice(*g, Some(user)).await,
            (
                StreamId::Guild(g),
                E::RoleUpdated { .. }
                | E::RoleDeleted { .. }
                | E::OverwriteSet { .. }
                | E::ChannelArchived { .. }
                | E::GuildArchived { .. }
                | E::GuildDeleted { .. },
            ) => self.recheck_voice(*g, None).await,
            (StreamId::Channel(c), E::VoiceJoined { .. }) => {
                // Their token carries these rights already.
                let user = &e.event.core.sender;
                if let Ok(perms) = self.commands.may_join_voice(user, *c, now()).await {
                    self.voice()?.pushed().insert((*c, user.clone()), permission(perms, false, false));
                }
                Ok(())
            }
            (StreamId::Channel(c), E::VoiceLeft { .. }) => {
                self.voice()?.pushed().remove(&(*c, e.event.core.sender.clone()));
                Ok(())
            }
            (StreamId::Channel(c), E::VoiceServerMuted { user, muted, .. }) if recent => {
                let voice = self.voice()?;
                let seats = self.commands.voice_seats(*c, now()).await?;
                let Some((_, seat, allowed)) = seats.iter().find(|(u, _, _)| u == user) else { return Ok(()) };
                if *muted {
                    for track in seat.microphones() {
                        voice.sfu.mute_track(*c, user, track, true).await?;
                    }
                }
                if let Ok(perms) = allowed {
                    self.push_permission(*c, user, *perms, seat).await?;
                }
                Ok(())
            }
            (StreamId::Channel(c), E::VoiceDisconnected { user, .. }) if recent => {
                self.voice()?.sfu.remove(*c, user, 0).await?;
                Ok(())
            }
            (StreamId::Channel(c), E::VoiceMoved { user, to, .. }) if recent => {
                self.voice()?.sfu.move_to(*c, user, *to).await?;
                self.reconcile(*to).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Re-checks everyone in `guild`'s voice rooms (or only `only`): who may no longer join
    /// is removed, tokens revoked; who may, gets what they may now publish and hear.
    async fn recheck_voice(&self, guild: GuildId, only: Option<&UserId>) -> Result<(), ApiError> {
        let voice = self.voice()?;
        let channels: Vec<ChannelId> = {
            let Ok(cell) = self.commands.guild_cell(guild).await else { return Ok(()) };
            let g = cell.lock().await;
            g.channels.iter().filter(|(_, c)| c.kind == ChannelKind::Voice).map(|(id, _)| *id).collect()
        };
        let now = now();
        for channel in channels {
            for (user, seat, allowed) in self.commands.voice_seats(channel, now).await? {
                if only.is_some_and(|o| *o != user) {
                    continue;
                }
                match allowed {
                    Err(why) => {
                        tracing::info!(%channel, %user, %why, "voice: removing someone who may no longer be in the room");
                        voice.sfu.remove(channel, &user, now.as_millis()).await?;
                        voice.pushed().remove(&(channel, user.clone()));
                        // Out of the room: recorded as LiveKit will report it (that report
                        // then changes nothing).
                        let leave = VoiceCommand::Leave { session: Some(seat.session) };
                        self.commands.voice(&user, channel, &leave, now).await?;
                    }
                    Ok(perms) => self.push_permission(channel, &user, perms, &seat).await?,
                }
            }
        }
        Ok(())
    }

    /// Sends `user`'s participant permission in `channel`'s room if it changed.
    async fn push_permission(
        &self,
        channel: ChannelId,
        user: &UserId,
        perms: Permissions,
        seat: &Seat,
    ) -> Result<(), ApiError> {
        let voice = self.voice()?;
        let wanted = permission(perms, seat.server_muted, seat.server_deafened);
        if voice.pushed().get(&(channel, user.clone())) == Some(&wanted) {
            return Ok(());
        }
        voice.sfu.set_permission(channel, user, perms, seat.server_muted, seat.server_deafened).await?;
        voice.pushed().insert((channel, user.clone()), wanted);
        Ok(())
    }
}

/// `POST /_openguild/voice/webhook`: a LiveKit webhook. 200 once taken (or ignored, for a
/// room that is not ours); 401 when unsigned, badly signed, tampered with, stale or replayed;
/// 503 when recording it failed (LiveKit sends it again).
pub(crate) async fn webhook(State(api): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let Some(voice) = api.voice.as_ref() else {
        return refusal(StatusCode::NOT_FOUND, "VOICE_UNAVAILABLE", unavailable().message);
    };
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let now_secs = (now().as_millis() / 1000) as i64;
    let event = match voice.webhooks.receive(&body, auth, now_secs) {
        Ok(event) => event,
        Err(refused) => {
            tracing::warn!(why = %refused, "voice: webhook refused");
            return refusal(StatusCode::UNAUTHORIZED, "WEBHOOK_REFUSED", refused.to_string());
        }
    };
    let report = openguild_voice::webhook::report(&event);
    match api.take_report(report).await {
        Ok(()) => {
            voice.webhooks.remember(&event, now_secs);
            Json(json!({ "ok": true })).into_response()
        }
        Err(e) => {
            tracing::warn!(event = %event.event, error = %e.message, "voice: recording a webhook failed");
            refusal(StatusCode::SERVICE_UNAVAILABLE, e.code, e.message)
        }
    }
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }))).into_response()
}

impl From<openguild_voice::VoiceError> for ApiError {
    fn from(e: openguild_voice::VoiceError) -> Self {
        tracing::warn!(error = %e, "voice: LiveKit call failed");
        ApiError::new("UNAVAILABLE", format!("the hub's voice server did not do it: {e}; try again shortly"))
    }
}

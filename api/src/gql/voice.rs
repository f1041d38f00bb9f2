//! Voice: tickets to a voice channel's LiveKit room, the roster, the participant's own mute
//! and deafen, and moderators' server mute, disconnect and move (`api::voice` does the rest).

use std::time::Duration;

use async_graphql::{Context, Object, SimpleObject};
use openguild_domain::guild::GuildCommand;
use openguild_domain::voice::VoiceCommand;
use openguild_domain::{ChannelId, UserId};
use openguild_projections::queries;

use super::{ChannelObj, DateTime, Id, User, api, viewer};
use crate::errors::{ApiError, Res};

/// What a client needs to join a voice channel's room on the hub's LiveKit.
#[derive(SimpleObject)]
pub struct VoiceTicket {
    /// The LiveKit server to connect to.
    pub url: String,
    /// A LiveKit access token: the viewer's identity and, as grants, what their permissions
    /// allow in this channel (CONNECT, SPEAK: microphone, STREAM: camera and screen share).
    pub token: String,
    /// After this the token admits no new connection (one made before lasts).
    pub expires_at: DateTime,
    /// The LiveKit room: the channel's id.
    pub room: String,
}

/// Someone in a voice channel.
#[derive(SimpleObject)]
pub struct VoiceParticipant {
    pub user: User,
    /// Muted by themselves or by a moderator.
    pub muted: bool,
    pub deafened: bool,
    pub server_muted: bool,
    pub server_deafened: bool,
    /// Publishing a camera.
    pub camera: bool,
    pub screen_share: bool,
    pub joined_at: DateTime,
}

/// The roster of `channel` (as the `voice` read model has it, after `after` if given).
pub(super) async fn participants(
    ctx: &Context<'_>,
    channel: ChannelId,
    after: Option<String>,
) -> Res<Vec<VoiceParticipant>> {
    let api = api(ctx);
    api.read_your_writes(ctx, &["voice"]).await?;
    if let Some(after) = after {
        let position: u64 =
            after.parse().map_err(|_| ApiError::invalid("after", "pass the cursor of a guildEvents event"))?;
        let wait = Duration::from_millis(api.settings.limits.read_your_writes_ms);
        api.projections.wait_for(&["voice"], position, wait).await.map_err(ApiError::from)?;
    }
    let rows = queries::voice_rosters(api.projections.db(), &[channel]).await.map_err(ApiError::from)?;
    Ok(rows
        .into_iter()
        .map(|r| VoiceParticipant {
            user: User(r.user),
            muted: r.self_muted || r.server_muted,
            deafened: r.self_deafened || r.server_deafened,
            server_muted: r.server_muted,
            server_deafened: r.server_deafened,
            camera: r.camera,
            screen_share: r.screen_share,
            joined_at: DateTime(r.joined_at),
        })
        .collect())
}

#[derive(Default)]
pub struct VoiceMutation;

#[Object]
impl VoiceMutation {
    /// A ticket to the voice channel's room, if the viewer may join it: refused with why
    /// (no CONNECT, timed out, banned, archived, full), or `VOICE_UNAVAILABLE` on a hub
    /// without voice.
    async fn join_voice(&self, ctx: &Context<'_>, channel_id: Id<ChannelId>) -> Res<VoiceTicket> {
        let me = viewer(ctx)?.user.clone();
        let t = api(ctx).join_voice(&me, channel_id.0).await?;
        Ok(VoiceTicket { url: t.url, token: t.token, expires_at: DateTime(t.expires_at_ms), room: t.room })
    }

    /// Leaves the voice channel: recorded, and the viewer's connection to it closed.
    async fn leave_voice(&self, ctx: &Context<'_>, channel_id: Id<ChannelId>) -> Res<bool> {
        let me = viewer(ctx)?.user.clone();
        let api = api(ctx);
        let position = api.leave_voice(&me, channel_id.0).await?;
        api.wrote(&me, position);
        Ok(true)
    }

    /// The viewer's own mute and deafen in the voice channel they are in, shown to others.
    async fn set_voice_state(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        muted: bool,
        deafened: bool,
    ) -> Res<bool> {
        run(ctx, channel_id.0, VoiceCommand::SetSelf { muted, deafened }).await
    }

    /// Server-mutes (MUTE_MEMBERS) and deafens (DEAFEN_MEMBERS) someone in a voice channel,
    /// or lifts it: their microphone is muted and they cannot unmute it.
    async fn server_mute_member(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        user_id: Id<UserId>,
        muted: bool,
        #[graphql(default)] deafened: bool,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        run(ctx, channel_id.0, VoiceCommand::ServerMute { user: user_id.0, muted, deafened, reason }).await
    }

    /// Disconnects someone from a voice channel (MOVE_MEMBERS).
    async fn disconnect_voice_member(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        user_id: Id<UserId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        run(ctx, channel_id.0, VoiceCommand::Disconnect { user: user_id.0, reason }).await
    }

    /// Moves someone to another voice channel (MOVE_MEMBERS; they must be allowed to connect
    /// there).
    async fn move_voice_member(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        user_id: Id<UserId>,
        to_channel_id: Id<ChannelId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        run(ctx, channel_id.0, VoiceCommand::Move { user: user_id.0, to: to_channel_id.0, reason }).await
    }

    /// Caps how many people a voice channel holds at once (0: no cap; MANAGE_CHANNELS).
    /// Members with MOVE_MEMBERS still join a full channel.
    async fn set_voice_user_limit(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        #[graphql(validator(maximum = 99))] limit: u32,
    ) -> Res<ChannelObj> {
        let api = api(ctx);
        let channel = channel_id.0;
        let guild = api.commands.guild_of(channel).await.map_err(ApiError::from)?;
        api.guild_cmd(ctx, guild, GuildCommand::SetUserLimit { channel, limit }).await?;
        Ok(api.channel_obj(&viewer(ctx)?.user, channel).await?)
    }
}

async fn run(ctx: &Context<'_>, channel: ChannelId, cmd: VoiceCommand) -> Res<bool> {
    let me = viewer(ctx)?.user.clone();
    let api = api(ctx);
    let position = api.voice_command(&me, channel, cmd).await?;
    api.wrote(&me, position);
    Ok(true)
}

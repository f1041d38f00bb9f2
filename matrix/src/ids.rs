//! Matrix ids of OpenGuild's things: a guild is the space `!<guild id>:<owner hub>`, a
//! channel the room `!<channel id>:<owner hub>`. Stable, and turned back without a lookup.

use openguild_domain::guild::Guild;
use openguild_domain::{ChannelId, GuildId};
use ruma::{OwnedRoomId, RoomId};

/// The space of a guild.
pub fn space_of(guild: &Guild) -> Option<OwnedRoomId> {
    let id = guild.id?;
    let origin = guild.origin.as_ref()?;
    RoomId::parse(format!("!{id}:{origin}")).ok()
}

/// The room of one of a guild's channels.
pub fn room_of(guild: &Guild, channel: ChannelId) -> Option<OwnedRoomId> {
    let origin = guild.origin.as_ref()?;
    RoomId::parse(format!("!{channel}:{origin}")).ok()
}

/// What a room id names: a guild's space or a channel's room (by the id before the `:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    Guild(GuildId),
    Channel(ChannelId),
}

#[allow(dead_code)]
pub fn named(room: &RoomId, is_guild: impl Fn(&GuildId) -> bool) -> Option<Named> {
    let local = room.as_str().strip_prefix('!')?.split(':').next()?;
    if let Ok(g) = local.parse::<GuildId>()
        && is_guild(&g)
    {
        return Some(Named::Guild(g));
    }
    local.parse::<ChannelId>().ok().map(Named::Channel)
}

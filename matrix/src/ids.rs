//! Matrix ids of OpenGuild's things: a guild is the space `!<guild id>:<owner hub>`, a
//! channel the room `!<channel id>:<owner hub>`. Stable, and turned back without a lookup.

use openguild_domain::ChannelId;
use openguild_domain::guild::Guild;
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

/// The OpenGuild id a room id carries: the part between `!` and `:` (a guild's id for its
/// space, a channel's for its room).
pub fn local_part(room: &RoomId) -> Option<&str> {
    room.as_str().strip_prefix('!')?.split(':').next()
}

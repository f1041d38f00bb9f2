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

/// A room `me` is not in, or that does not exist: 403 `M_FORBIDDEN`, as a homeserver answers
/// (which of the two it is stays unsaid).
pub fn not_in_room(room: &RoomId) -> crate::error::MatrixError {
    crate::error::MatrixError::new(403, "M_FORBIDDEN", format!("you are not in the room {room}, or it does not exist"))
}

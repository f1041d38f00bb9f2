//! What the read models share to apply events: statement macros, the guild of a channel
//! from a projection's own table, and the text keys rows store for channel kinds, places and
//! overwrite targets. Read models import this, never each other, so each can be read,
//! changed and rebuilt alone.

use openguild_domain::body::Place;
use openguild_domain::permissions::OverwriteTarget;
use openguild_store::StoredEvent;

use crate::db::{DbError, Tables};
use crate::writer::Writer;

/// Runs one statement with binds; evaluates to the rows affected.
macro_rules! exec {
    ($w:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        $w.exec($sql, vec![$($crate::db::Val::from($bind)),*]).await?
    };
}
pub(crate) use exec;

/// Queues a one-row insert into a table (coalesced with the next ones).
macro_rules! ins {
    ($w:expr, $table:expr, $tail:expr $(, $bind:expr)* $(,)?) => {
        $w.insert($table, $tail, vec![$($crate::db::Val::from($bind)),*]).await?
    };
}
pub(crate) use ins;

/// The guild of a channel, from a projection's own table of channels (`id`, `guild`), looked
/// up once a batch.
pub(crate) async fn guild_of(
    c: &mut Writer<'_>,
    t: &Tables,
    channels: &str,
    channel: &openguild_domain::ChannelId,
) -> Result<Option<String>, DbError> {
    let id = c.text(channel.as_bytes(), || channel.to_string());
    let sql = || format!("SELECT guild FROM {} WHERE id = $1", t.n(channels));
    c.lookup(format!("guild-of:{id}"), sql, vec![id.into()]).await
}

/// Adds the channel `e` opens (if any) to a projection's own table of channels (`id`,
/// `guild`), for [`guild_of`].
pub(crate) async fn note_channel(
    c: &mut Writer<'_>,
    t: &Tables,
    channels: &str,
    e: &StoredEvent,
) -> Result<(), DbError> {
    if let Some((channel, guild)) = openguild_domain::guild::opened_channel(&e.event) {
        exec!(c, format!("INSERT INTO {} VALUES ($1, $2)", t.n(channels)), channel.to_string(), guild.to_string());
        c.remember(format!("guild-of:{channel}"), guild.to_string());
    }
    Ok(())
}

/// A channel kind as rows store it.
pub(crate) fn kind_name(kind: openguild_domain::ChannelKind) -> &'static str {
    match kind {
        openguild_domain::ChannelKind::Text => "text",
        openguild_domain::ChannelKind::Voice => "voice",
        openguild_domain::ChannelKind::Announcement => "announcement",
        openguild_domain::ChannelKind::Dm => "dm",
        openguild_domain::ChannelKind::GroupDm => "group_dm",
        openguild_domain::ChannelKind::Thread => "thread",
    }
}

/// `channel:<id>` or `category:<id>`.
pub(crate) fn place_key(place: &Place) -> String {
    match place {
        Place::Channel(c) => format!("channel:{c}"),
        Place::Category(c) => format!("category:{c}"),
    }
}

/// `role:<id>` or `member:<user id>`.
pub(crate) fn target_key(target: &OverwriteTarget) -> String {
    match target {
        OverwriteTarget::Role(r) => format!("role:{r}"),
        OverwriteTarget::Member(u) => format!("member:{u}"),
    }
}

//! Subscriptions. The schema declares them for clients and for validation; [`crate::ws`]
//! runs them. A subscription's resolver is executed in one of two modes:
//!
//! - `Register`: when a client subscribes. It checks who may follow what, and records the
//!   [`Topic`] (and resume cursor) for the websocket layer; it yields nothing.
//! - `Deliver`: for one live event. It turns the event into the subscribed type and yields
//!   it once. The output depends only on the event and the selection, never on the viewer,
//!   so one rendering is shared by every subscriber with the same selection (who may see
//!   it is checked per subscriber, at delivery, by [`crate::Api::may_receive`]).

use std::sync::{Arc, Mutex};

use async_graphql::{Context, Enum, ID, SimpleObject};
use openguild_domain::{ChannelId, EventBody, GuildId, Permissions, StreamId, UserId};
use openguild_projections::queries::MessageRow;

use super::{DateTime, Id, Message, User, api, now, viewer};
use crate::errors::{ApiError, Res};

pub use crate::fanout::Live;

/// What one subscription follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    Channel { channel: ChannelId, guild: GuildId },
    Guild(GuildId),
    Me(UserId),
}

/// A registered subscription: its topic and the cursor to resume after.
#[derive(Clone, Debug)]
pub struct Registered {
    pub topic: Topic,
    pub since: Option<u64>,
}

#[derive(Clone)]
pub enum SubMode {
    Register(Arc<Mutex<Option<Registered>>>),
    Deliver(Arc<Live>),
}

/// What the live feed needs to know of channels to route their events.
pub trait ChannelIndex {
    /// Whether a channel is a DM's: every post in one is news to the others in it.
    fn is_dm(&self, channel: &ChannelId) -> bool;
    /// The guild of a voice channel: who is in its room is news to the guild's followers.
    fn voice_guild(&self, channel: &ChannelId) -> Option<GuildId>;
}

impl ChannelIndex for crate::commands::Commands {
    fn is_dm(&self, channel: &ChannelId) -> bool {
        crate::commands::Commands::is_dm(self, channel)
    }

    fn voice_guild(&self, channel: &ChannelId) -> Option<GuildId> {
        crate::commands::Commands::voice_guild(self, channel)
    }
}

/// Whether `body` is about who is in a voice room.
fn is_voice(body: &EventBody) -> bool {
    body.kind().starts_with("voice.")
}

impl Topic {
    /// Whether `live` belongs to this topic (who may see it is checked apart).
    pub fn matches(&self, live: &Live, channels: &impl ChannelIndex) -> bool {
        match (self, live) {
            (Topic::Channel { channel, .. }, Live::Typing { channel: c, .. }) => channel == c,
            (Topic::Channel { channel, .. }, Live::Event(e)) => e.event.core.stream == StreamId::Channel(*channel),
            (Topic::Guild(g), Live::Event(e)) => match &e.event.core.stream {
                StreamId::Guild(of) => of == g,
                StreamId::Channel(c) => is_voice(e.event.content()) && channels.voice_guild(c) == Some(*g),
                _ => false,
            },
            (Topic::Me(me), Live::Event(e)) => match &e.event.core.stream {
                StreamId::Guild(_) => target_of(e.event.content()).is_some_and(|t| t == me),
                StreamId::User(u) => {
                    u == me
                        && matches!(
                            e.event.content(),
                            EventBody::SessionRevoked { .. }
                                | EventBody::Read { .. }
                                | EventBody::Blocked { .. }
                                | EventBody::Unblocked { .. }
                        )
                }
                // Posts that mention them or everyone, and every post by others in their DMs.
                StreamId::Channel(c) => match e.event.content() {
                    EventBody::MessagePosted { mentions, mentions_everyone, mention_roles, .. } => {
                        e.event.core.sender != *me
                            && (*mentions_everyone
                                || mentions.contains(me)
                                || !mention_roles.is_empty()
                                || channels.is_dm(c))
                    }
                    _ => false,
                },
                _ => false,
            },
            _ => false,
        }
    }
}

/// The user an event is about, for events about one user.
fn target_of(body: &EventBody) -> Option<&UserId> {
    use EventBody as E;
    match body {
        E::MemberJoined { user, .. }
        | E::MemberLeft { user }
        | E::MemberKicked { user, .. }
        | E::MemberBanned { user, .. }
        | E::MemberUnbanned { user, .. }
        | E::MemberTimedOut { user, .. }
        | E::TimeoutRemoved { user, .. }
        | E::RoleAssigned { user, .. }
        | E::RoleUnassigned { user, .. }
        | E::NicknameSet { user, .. } => Some(user),
        _ => None,
    }
}

fn reason_of(body: &EventBody) -> Option<String> {
    use EventBody as E;
    match body {
        E::MemberKicked { reason, .. }
        | E::MemberBanned { reason, .. }
        | E::MemberUnbanned { reason, .. }
        | E::MemberTimedOut { reason, .. }
        | E::TimeoutRemoved { reason, .. }
        | E::RoleAssigned { reason, .. }
        | E::RoleUnassigned { reason, .. }
        | E::ChannelLocked { reason, .. }
        | E::MessageRedacted { reason, .. }
        | E::GuildArchived { reason }
        | E::VoiceServerMuted { reason, .. }
        | E::VoiceDisconnected { reason, .. }
        | E::VoiceMoved { reason, .. }
        | E::ReportFiled { reason, .. }
        | E::ReportResolved { reason, .. } => Some(reason.clone()),
        _ => None,
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChannelEventKind {
    MessagePosted,
    MessageEdited,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MessagePinned,
    MessageUnpinned,
    Typing,
}

/// Something that happened in a channel.
#[derive(SimpleObject)]
pub struct ChannelEvent {
    /// Pass it as `since` to resume after this event.
    pub cursor: String,
    pub kind: ChannelEventKind,
    pub channel_id: ID,
    pub actor: User,
    pub at: DateTime,
    /// The signed event (absent for typing).
    pub event_id: Option<ID>,
    /// MESSAGE_POSTED: the new message.
    pub message: Option<Message>,
    /// The message acted on (edits, deletes, reactions, pins).
    pub message_id: Option<ID>,
    /// MESSAGE_EDITED: the new text.
    pub body: Option<String>,
    pub emoji: Option<String>,
    pub reason: Option<String>,
}

/// Something that happened to a guild: its channels, roles, members, moderation.
#[derive(SimpleObject)]
pub struct GuildEvent {
    pub cursor: String,
    /// The event's kind, e.g. `member.banned`, `channel.created`.
    pub kind: String,
    pub guild_id: ID,
    pub actor: User,
    pub at: DateTime,
    pub event_id: ID,
    /// The member it is about, if any.
    pub target: Option<User>,
    /// The channel it is about, if any.
    pub channel_id: Option<ID>,
    /// `voice.moved`: the voice channel they were moved to.
    pub to_channel_id: Option<ID>,
    pub reason: Option<String>,
}

/// Something that happened to the viewer: joined, kicked, banned, timed out, roles, a
/// session ended.
#[derive(SimpleObject)]
pub struct MyEvent {
    pub cursor: String,
    /// The event's kind: `member.kicked`, …; `message.posted` for a post that mentions the
    /// viewer or everyone, or in one of their DMs; `account.read` when one of their devices
    /// moved a read marker.
    pub kind: String,
    pub guild_id: Option<ID>,
    /// `message.posted` and `account.read`: the channel (or DM).
    pub channel_id: Option<ID>,
    /// `message.posted`: the message.
    pub message: Option<Message>,
    /// `account.read`: the message read up to.
    pub message_id: Option<ID>,
    pub actor: User,
    pub at: DateTime,
    pub event_id: ID,
    pub reason: Option<String>,
}

fn channel_event(live: &Live) -> Option<ChannelEvent> {
    use EventBody as E;
    let (e, channel) = match live {
        Live::Typing { channel, user, at, after } => {
            return Some(ChannelEvent {
                cursor: after.to_string(),
                kind: ChannelEventKind::Typing,
                channel_id: ID(channel.to_string()),
                actor: User(user.clone()),
                at: (*at).into(),
                event_id: None,
                message: None,
                message_id: None,
                body: None,
                emoji: None,
                reason: None,
            });
        }
        Live::Event(e) => match &e.event.core.stream {
            StreamId::Channel(c) => (e, *c),
            _ => return None,
        },
    };
    let core = &e.event.core;
    let mut out = ChannelEvent {
        cursor: e.position.to_string(),
        kind: ChannelEventKind::MessagePosted,
        channel_id: ID(channel.to_string()),
        actor: User(core.sender.clone()),
        at: core.ts.into(),
        event_id: Some(ID(e.event.id.to_string())),
        message: None,
        message_id: None,
        body: None,
        emoji: None,
        reason: None,
    };
    let id = |m: &openguild_domain::MessageId| Some(ID(m.to_string()));
    match e.event.content() {
        E::MessagePosted { reply_to, attachments, .. } => {
            let text = match &e.event.body {
                Some(E::MessagePosted { text, .. }) => Some(text.clone()),
                _ => None,
            };
            out.message_id = id(&e.event.id);
            out.message = Some(Message(MessageRow {
                id: e.event.id,
                position: e.position,
                channel,
                author: core.sender.clone(),
                deleted: text.is_none(),
                body: text,
                reply_to: *reply_to,
                created_at: core.ts.as_millis(),
                edited_at: None,
                pinned: false,
                reactions: Vec::new(),
                mine: Vec::new(),
                attachments: attachments.clone(),
            }));
        }
        E::MessageEdited { message, .. } => {
            out.kind = ChannelEventKind::MessageEdited;
            out.message_id = id(message);
            // An erased edit shows no text (the redacted form's is empty).
            out.body = match &e.event.body {
                Some(E::MessageEdited { text, .. }) => Some(text.clone()),
                _ => None,
            };
        }
        E::MessageRedacted { message, reason } => {
            out.kind = ChannelEventKind::MessageDeleted;
            out.message_id = id(message);
            out.reason = Some(reason.clone());
        }
        E::ReactionAdded { message, emoji } | E::ReactionRemoved { message, emoji } => {
            out.kind = if matches!(e.event.content(), E::ReactionAdded { .. }) {
                ChannelEventKind::ReactionAdded
            } else {
                ChannelEventKind::ReactionRemoved
            };
            out.message_id = id(message);
            out.emoji = Some(emoji.clone());
        }
        E::MessagePinned { message } => {
            out.kind = ChannelEventKind::MessagePinned;
            out.message_id = id(message);
        }
        E::MessageUnpinned { message } => {
            out.kind = ChannelEventKind::MessageUnpinned;
            out.message_id = id(message);
        }
        _ => return None,
    }
    Some(out)
}

fn guild_event(live: &Live, channels: &impl ChannelIndex) -> Option<GuildEvent> {
    let Live::Event(e) = live else { return None };
    let body = e.event.content();
    use EventBody as E;
    // A voice room's news: the channel and the person it is about.
    if let StreamId::Channel(c) = &e.event.core.stream {
        let g = channels.voice_guild(c).filter(|_| is_voice(body))?;
        let target = match body {
            E::VoiceServerMuted { user, .. } | E::VoiceDisconnected { user, .. } | E::VoiceMoved { user, .. } => {
                user.clone()
            }
            _ => e.event.core.sender.clone(),
        };
        return Some(GuildEvent {
            cursor: e.position.to_string(),
            kind: body.kind().to_owned(),
            guild_id: ID(g.to_string()),
            actor: User(e.event.core.sender.clone()),
            at: e.event.core.ts.into(),
            event_id: ID(e.event.id.to_string()),
            target: Some(User(target)),
            channel_id: Some(ID(c.to_string())),
            to_channel_id: match body {
                E::VoiceMoved { to, .. } => Some(ID(to.to_string())),
                _ => None,
            },
            reason: reason_of(body),
        });
    }
    let StreamId::Guild(g) = &e.event.core.stream else { return None };
    let channel = match body {
        E::ChannelCreated { channel, .. }
        | E::ChannelUpdated { channel, .. }
        | E::ChannelMoved { channel, .. }
        | E::ChannelDeleted { channel }
        | E::SlowModeSet { channel, .. }
        | E::ChannelLocked { channel, .. }
        | E::UserLimitSet { channel, .. } => Some(ID(channel.to_string())),
        E::OverwriteSet { place: openguild_domain::Place::Channel(channel), .. } => Some(ID(channel.to_string())),
        _ => None,
    };
    Some(GuildEvent {
        cursor: e.position.to_string(),
        kind: body.kind().to_owned(),
        guild_id: ID(g.to_string()),
        actor: User(e.event.core.sender.clone()),
        at: e.event.core.ts.into(),
        event_id: ID(e.event.id.to_string()),
        target: target_of(body).cloned().map(User),
        channel_id: channel,
        to_channel_id: None,
        reason: reason_of(body),
    })
}

fn my_event(live: &Live) -> Option<MyEvent> {
    let Live::Event(e) = live else { return None };
    let guild = match &e.event.core.stream {
        StreamId::Guild(g) => Some(ID(g.to_string())),
        _ => None,
    };
    let (channel_id, message, message_id) = match (&e.event.core.stream, e.event.content()) {
        (StreamId::Channel(_), EventBody::MessagePosted { .. }) => {
            let event = channel_event(live)?;
            (Some(event.channel_id), event.message, None)
        }
        (StreamId::User(_), EventBody::Read { channel, message }) => {
            (Some(ID(channel.to_string())), None, Some(ID(message.to_string())))
        }
        _ => (None, None, None),
    };
    Some(MyEvent {
        channel_id,
        message,
        message_id,
        cursor: e.position.to_string(),
        kind: e.event.content().kind().to_owned(),
        guild_id: guild,
        actor: User(e.event.core.sender.clone()),
        at: e.event.core.ts.into(),
        event_id: ID(e.event.id.to_string()),
        reason: reason_of(e.event.content()),
    })
}

fn parse_since(since: Option<String>) -> Result<Option<u64>, ApiError> {
    since
        .map(|s| {
            s.parse::<u64>().map_err(|_| ApiError::invalid("since", "pass the cursor of the last event you received"))
        })
        .transpose()
}

/// Nothing (registering) or one rendered event (delivering).
pub type Once<T> = futures::stream::Iter<std::option::IntoIter<T>>;

/// Registers (mode `Register`) or renders one event (mode `Deliver`).
fn run<T: Send + 'static>(
    ctx: &Context<'_>,
    registration: Option<(Topic, Option<u64>)>,
    render: impl FnOnce(&Live) -> Option<T>,
) -> Res<Once<T>> {
    match ctx.data_opt::<SubMode>() {
        Some(SubMode::Register(slot)) => {
            if let Some((topic, since)) = registration {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Registered { topic, since });
            }
            Ok(futures::stream::iter(None))
        }
        Some(SubMode::Deliver(live)) => Ok(futures::stream::iter(render(live))),
        None => {
            Err(ApiError::invalid("transport", "subscriptions are served over the websocket at /graphql/ws").into())
        }
    }
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// Messages posted, edited and deleted, reactions and typing in a channel the viewer can
    /// see. Pass `since` (a cursor) to first receive everything after it.
    async fn channel_events(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        since: Option<String>,
    ) -> async_graphql::Result<Once<ChannelEvent>> {
        let registration = if matches!(ctx.data_opt::<SubMode>(), Some(SubMode::Register(_))) {
            let me = viewer(ctx)?.user.clone();
            let channel: ChannelId = channel_id.0;
            let api = api(ctx);
            let g = api.channel_view(&me, channel).await?;
            let guild = g.id.ok_or_else(|| ApiError::not_found("guild"))?;
            Some((Topic::Channel { channel, guild }, parse_since(since)?))
        } else {
            None
        };
        run(ctx, registration, channel_event)
    }

    /// Changes to a guild the viewer is a member of: channels, roles, members, moderation.
    async fn guild_events(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        since: Option<String>,
    ) -> async_graphql::Result<Once<GuildEvent>> {
        let registration = if matches!(ctx.data_opt::<SubMode>(), Some(SubMode::Register(_))) {
            let me = viewer(ctx)?.user.clone();
            let guild: GuildId = guild_id.0;
            api(ctx).member_view(&me, guild).await?;
            Some((Topic::Guild(guild), parse_since(since)?))
        } else {
            None
        };
        let commands = api(ctx).commands.clone();
        run(ctx, registration, move |live| guild_event(live, &*commands))
    }

    /// What happens to the viewer: joins, kicks, bans, timeouts, roles, ended sessions.
    async fn my_events(&self, ctx: &Context<'_>, since: Option<String>) -> async_graphql::Result<Once<MyEvent>> {
        let registration = if matches!(ctx.data_opt::<SubMode>(), Some(SubMode::Register(_))) {
            Some((Topic::Me(viewer(ctx)?.user.clone()), parse_since(since)?))
        } else {
            None
        };
        run(ctx, registration, my_event)
    }
}

impl crate::Api {
    /// Whether `me` may hear, on `myEvents`, of a post in a channel: one they can see, by
    /// someone they did not block.
    async fn may_hear_of(&self, me: &UserId, live: &Live) -> Verdict {
        let Live::Event(e) = live else { return Verdict::Deliver };
        let StreamId::Channel(channel) = &e.event.core.stream else { return Verdict::Deliver };
        let Ok(guild) = self.commands.guild_of(*channel).await else { return Verdict::Skip };
        let Ok(cell) = self.commands.guild_cell(guild).await else { return Verdict::Skip };
        {
            let g = cell.lock().await;
            if !g.channel_permissions(me, *channel, now()).contains(Permissions::VIEW_CHANNEL) {
                return Verdict::Skip;
            }
            // Called on by a role only: theirs?
            if let EventBody::MessagePosted { mentions, mentions_everyone, mention_roles, .. } = e.event.content()
                && !g.dm
                && !*mentions_everyone
                && !mentions.contains(me)
                && !g.members.get(me).is_some_and(|m| m.roles.iter().any(|r| mention_roles.contains(r)))
            {
                return Verdict::Skip;
            }
        }
        if let Ok(openguild_domain::body::NotifyLevel::None) = self.notify_level(me, guild, Some(*channel)).await {
            return Verdict::Skip;
        }
        match self.blocked_by(me).await {
            Ok(blocked) if blocked.contains(&e.event.core.sender) => Verdict::Skip,
            _ => Verdict::Deliver,
        }
    }
}

/// Whether a subscriber may still receive events of `topic`.
pub enum Verdict {
    Deliver,
    /// Not this one (moderation the subscriber may not see); the subscription goes on.
    Skip,
    /// The subscription ends, saying why.
    End(&'static str),
}

impl crate::Api {
    pub async fn may_receive(&self, me: &UserId, topic: &Topic, live: &Live) -> Verdict {
        let guild = match topic {
            Topic::Me(_) => return self.may_hear_of(me, live).await,
            Topic::Channel { guild, .. } | Topic::Guild(guild) => *guild,
        };
        let Ok(cell) = self.commands.guild_cell(guild).await else { return Verdict::End("the guild is gone") };
        let g = cell.lock().await;
        if !g.members.contains_key(me) {
            return Verdict::End("you are no longer a member of this guild");
        }
        if let Topic::Channel { channel, .. } = topic {
            if !g.channels.contains_key(channel) {
                return Verdict::End("the channel was deleted");
            }
            if !g.channel_permissions(me, *channel, now()).contains(Permissions::VIEW_CHANNEL) {
                return Verdict::End("you can no longer see this channel");
            }
        }
        // A voice room's news, for those who can see the channel.
        if let (Topic::Guild(_), Live::Event(e)) = (topic, live)
            && let StreamId::Channel(c) = &e.event.core.stream
            && !g.channel_permissions(me, *c, now()).contains(Permissions::VIEW_CHANNEL)
        {
            return Verdict::Skip;
        }
        // The reports queue is for moderators only.
        if let Live::Event(e) = live
            && matches!(
                e.event.content(),
                EventBody::ReportFiled { .. } | EventBody::ReportAssigned { .. } | EventBody::ReportResolved { .. }
            )
            && !g.guild_permissions(me, now()).contains(Permissions::MODERATE_MEMBERS)
        {
            return Verdict::Skip;
        }
        Verdict::Deliver
    }
}

//! Event bodies: what happened, one variant per kind, and each kind's redacted form.
//!
//! Bodies are versioned by their tag. A change that only adds an optional field keeps the
//! tag (`#[serde(default, skip_serializing_if = ...)]`, so old bytes still re-encode
//! identically); any other change gets a new tag, and the old one moves to [`legacy`] with
//! an upcast. Stored bytes are never rewritten: old events are upcast in memory on read.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{
    CategoryId, ChannelId, GuildId, InviteCode, MessageId, ReportId, RoleId, ServerName, Timestamp, UserId,
};
use crate::permissions::{OverwriteTarget, Permissions};

/// What happened. The tag (`guild.created`, …) names the kind and its version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum EventBody {
    // ---- guild stream: the guild itself
    #[serde(rename = "guild.created")]
    GuildCreated(GuildCreated),
    #[serde(rename = "guild.updated")]
    GuildUpdated { name: Option<String>, description: Option<String> },
    #[serde(rename = "guild.archived")]
    GuildArchived { reason: String },
    #[serde(rename = "guild.deleted")]
    GuildDeleted { reason: String },

    // ---- categories and channels
    #[serde(rename = "category.created")]
    CategoryCreated { category: CategoryId, name: String, position: u32 },
    #[serde(rename = "category.updated")]
    CategoryUpdated { category: CategoryId, name: String, position: u32 },
    #[serde(rename = "category.deleted")]
    CategoryDeleted { category: CategoryId },
    #[serde(rename = "channel.created")]
    ChannelCreated {
        channel: ChannelId,
        name: String,
        kind: ChannelKind,
        category: Option<CategoryId>,
        position: u32,
        topic: String,
    },
    /// A thread under `message` of `parent`: a channel of its own (messages in
    /// `channel:<thread>`), with the parent's permissions.
    #[serde(rename = "thread.started")]
    ThreadStarted { thread: ChannelId, parent: ChannelId, message: MessageId, name: String },
    #[serde(rename = "channel.updated")]
    ChannelUpdated { channel: ChannelId, name: String, topic: String },
    #[serde(rename = "channel.moved")]
    ChannelMoved { channel: ChannelId, category: Option<CategoryId>, position: u32 },
    #[serde(rename = "channel.deleted")]
    ChannelDeleted { channel: ChannelId },
    #[serde(rename = "channel.slow_mode")]
    SlowModeSet { channel: ChannelId, seconds: u32 },
    /// The channel is read-only for good; after the hub's retention its text is erased.
    #[serde(rename = "channel.archived")]
    ChannelArchived { channel: ChannelId, reason: String },
    #[serde(rename = "channel.locked")]
    ChannelLocked { channel: ChannelId, locked: bool, reason: String },
    /// How many people a voice channel holds at once (0: no limit).
    #[serde(rename = "channel.user_limit")]
    UserLimitSet { channel: ChannelId, limit: u32 },
    /// Sets (or, with both sets empty, removes) one overwrite on a channel or category.
    #[serde(rename = "overwrite.set")]
    OverwriteSet { place: Place, target: OverwriteTarget, allow: Permissions, deny: Permissions },

    // ---- roles
    #[serde(rename = "role.created")]
    RoleCreated { role: RoleId, name: String, permissions: Permissions, position: u32 },
    #[serde(rename = "role.updated")]
    RoleUpdated { role: RoleId, name: String, permissions: Permissions },
    /// The new order of every role but `@everyone`, lowest first (positions 1, 2, …).
    #[serde(rename = "role.reordered")]
    RolesReordered { order: Vec<RoleId> },
    #[serde(rename = "role.deleted")]
    RoleDeleted { role: RoleId },
    #[serde(rename = "role.assigned")]
    RoleAssigned { user: UserId, role: RoleId, reason: String },
    #[serde(rename = "role.unassigned")]
    RoleUnassigned { user: UserId, role: RoleId, reason: String },

    // ---- invites and membership
    #[serde(rename = "invite.created")]
    InviteCreated { code: InviteCode, max_uses: Option<u32>, expires_at: Option<Timestamp> },
    #[serde(rename = "invite.revoked")]
    InviteRevoked { code: InviteCode },
    #[serde(rename = "member.joined")]
    MemberJoined { user: UserId, invite: Option<InviteCode> },
    #[serde(rename = "member.left")]
    MemberLeft { user: UserId },
    #[serde(rename = "member.kicked")]
    MemberKicked { user: UserId, reason: String },
    /// `purge_since`: the banned user's messages posted at or after this time are removed.
    #[serde(rename = "member.banned")]
    MemberBanned { user: UserId, reason: String, purge_since: Option<Timestamp> },
    #[serde(rename = "member.unbanned")]
    MemberUnbanned { user: UserId, reason: String },
    #[serde(rename = "member.timed_out")]
    MemberTimedOut { user: UserId, until: Timestamp, reason: String },
    #[serde(rename = "member.timeout_removed")]
    TimeoutRemoved { user: UserId, reason: String },
    #[serde(rename = "member.nickname")]
    NicknameSet { user: UserId, nickname: Option<String> },

    // ---- reports
    #[serde(rename = "report.filed")]
    ReportFiled { report: ReportId, target: ReportTarget, reason: String },
    #[serde(rename = "report.resolved")]
    ReportResolved { report: ReportId, action: ReportAction, reason: String },
    /// A moderator takes a report (`None`: it goes back to the open queue).
    #[serde(rename = "report.assigned")]
    ReportAssigned { report: ReportId, assignee: Option<UserId> },

    // ---- channel stream: messages
    #[serde(rename = "message.posted")]
    MessagePosted {
        text: String,
        reply_to: Option<MessageId>,
        mentions: BTreeSet<UserId>,
        mentions_everyone: bool,
        /// Roles it calls on (`@&<role id>`): everyone holding one is mentioned.
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        mention_roles: BTreeSet<crate::ids::RoleId>,
        /// Uploads shown with the message (absent from older events, which keep their bytes).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        /// What a client of another protocol put with the message, kept and returned as sent:
        /// a Matrix client's content keys beyond `body` and `msgtype` (`formatted_body`, its
        /// own keys), as JSON text. Erased with the text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra: Option<String>,
    },
    #[serde(rename = "message.edited")]
    MessageEdited { message: MessageId, text: String },
    #[serde(rename = "message.redacted")]
    MessageRedacted { message: MessageId, reason: String },
    #[serde(rename = "reaction.added")]
    ReactionAdded { message: MessageId, emoji: String },
    #[serde(rename = "reaction.removed")]
    ReactionRemoved { message: MessageId, emoji: String },
    #[serde(rename = "message.pinned")]
    MessagePinned { message: MessageId },
    #[serde(rename = "message.unpinned")]
    MessageUnpinned { message: MessageId },

    // ---- channel stream: voice (see `crate::voice`). The SFU's reports are the
    // participant's own events (sender = the participant); moderators' acts name the target.
    /// The SFU let the sender into the channel's room as participant `session`.
    #[serde(rename = "voice.joined")]
    VoiceJoined { session: String },
    /// The sender's participant `session` left the room (or was removed from it).
    #[serde(rename = "voice.left")]
    VoiceLeft { session: String },
    /// The sender published (or stopped publishing) a track.
    #[serde(rename = "voice.track")]
    VoiceTrack { track: String, source: TrackSource, published: bool, muted: bool },
    /// The sender's own microphone and speaker state, as their client says.
    #[serde(rename = "voice.self")]
    VoiceSelf { muted: bool, deafened: bool },
    /// A moderator's mute and deafen of `user` (both false: lifted).
    #[serde(rename = "voice.server_muted")]
    VoiceServerMuted { user: UserId, muted: bool, deafened: bool, reason: String },
    /// A moderator removed `user` from the channel's room.
    #[serde(rename = "voice.disconnected")]
    VoiceDisconnected { user: UserId, reason: String },
    /// A moderator moved `user` to the voice channel `to`.
    #[serde(rename = "voice.moved")]
    VoiceMoved { user: UserId, to: ChannelId, reason: String },

    // ---- user stream: the account
    #[serde(rename = "account.registered")]
    AccountRegistered {
        display_name: String,
        /// For a bot: the one guild it was made for and may act in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bot_of: Option<crate::ids::GuildId>,
    },
    /// An argon2id PHC string. Redacted: a credential is never needed to check authority.
    #[serde(rename = "account.password_set")]
    PasswordSet { phc: String },
    /// A bearer session: the BLAKE3 hash of its token, never the token.
    #[serde(rename = "session.opened")]
    SessionOpened {
        #[serde(with = "crate::canonical::bytes")]
        token_hash: [u8; 32],
        expires_at: Timestamp,
    },
    #[serde(rename = "session.revoked")]
    SessionRevoked {
        #[serde(with = "crate::canonical::bytes")]
        token_hash: [u8; 32],
    },

    /// The account's user blocks `user`: no new DM between them, and `user`'s messages are
    /// hidden from this account.
    #[serde(rename = "account.blocked")]
    Blocked { user: UserId },
    #[serde(rename = "account.unblocked")]
    Unblocked { user: UserId },
    /// Whether people this user shares no guild with may open a DM with them.
    #[serde(rename = "account.dm_policy_set")]
    DmPolicySet { strangers: bool },
    /// How loudly a guild or one of its channels may call on the account's user (`None`:
    /// as its guild says, or the default, `All`). Exactly one of `guild` and `channel`.
    #[serde(rename = "account.notify_set")]
    NotifySet { guild: Option<GuildId>, channel: Option<ChannelId>, level: Option<NotifyLevel> },
    /// The account's user follows (or stops following) a thread.
    #[serde(rename = "account.thread_followed")]
    ThreadFollowed { thread: ChannelId, follow: bool },
    /// The account's user has read `channel` (a guild's channel or a DM's) up to `message`.
    #[serde(rename = "account.read")]
    Read { channel: ChannelId, message: MessageId },

    // ---- hub stream
    #[serde(rename = "hub.operator_granted")]
    OperatorGranted { user: UserId },
    #[serde(rename = "hub.operator_revoked")]
    OperatorRevoked { user: UserId },
    #[serde(rename = "hub.creator_granted")]
    CreatorGranted { user: UserId },
    /// An operator's act inside a guild, as recorded in the hub's own log.
    #[serde(rename = "hub.operator_acted")]
    OperatorActed { guild: crate::ids::GuildId, event: crate::ids::EventId, kind: String, reason: String },
    #[serde(rename = "hub.user_banned")]
    UserBanned { user: UserId, reason: String },
    /// A service token for a host application: the BLAKE3 hash of the token, never the token.
    #[serde(rename = "hub.service_token_created")]
    ServiceTokenCreated {
        #[serde(with = "crate::canonical::bytes")]
        token_hash: [u8; 32],
        name: String,
        scopes: Vec<TokenScope>,
    },
    #[serde(rename = "hub.service_token_revoked")]
    ServiceTokenRevoked {
        #[serde(with = "crate::canonical::bytes")]
        token_hash: [u8; 32],
    },
    #[serde(rename = "hub.external_user_linked")]
    ExternalUserLinked { external_id: String, user: UserId },
    #[serde(rename = "hub.external_guild_linked")]
    ExternalGuildLinked { external_id: String, guild: crate::ids::GuildId },
    #[serde(rename = "hub.external_channel_linked")]
    ExternalChannelLinked { external_id: String, guild: crate::ids::GuildId, channel: ChannelId, alias: Option<String> },
    /// A peer hub an operator allowed, reached at `url`: the hub federates with it from now
    /// on, whatever the configuration says (docs/PROTOCOL.md, "Peers").
    #[serde(rename = "hub.peer_allowed")]
    PeerAllowed { name: ServerName, url: String },
    /// A peer hub an operator denied: refused and no longer sent to, even if the
    /// configuration lists it.
    #[serde(rename = "hub.peer_denied")]
    PeerDenied { name: ServerName },
}

/// How much of a guild or channel is news to someone: every message, only what mentions
/// them (or everyone, or a role of theirs), or nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NotifyLevel {
    #[default]
    All,
    Mentions,
    None,
}

/// A file attached to a message, as uploaded: what a client needs to show it, and the hash
/// of its bytes, so a copy fetched from anywhere can be checked against the signed event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Attachment {
    pub id: crate::ids::MediaId,
    /// The name the uploader gave (erased with the message's text).
    pub filename: String,
    /// Sniffed from the bytes, never taken from the client.
    pub content_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// BLAKE3 of the stored bytes.
    #[serde(with = "crate::canonical::bytes")]
    pub hash: [u8; 32],
}

/// The body of a guild's first event. The guild's id is derived from the creator, origin,
/// time and nonce (see [`crate::event::guild_id_for`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GuildCreated {
    pub creator: UserId,
    pub origin: ServerName,
    pub created_at: Timestamp,
    #[serde(with = "crate::canonical::bytes")]
    pub nonce: [u8; 16],
    pub name: String,
    /// Present for a direct-message conversation, not a guild: everyone in it, the creator
    /// included (2 to [`crate::guild::MAX_DM_MEMBERS`]). A DM is a guild of one channel
    /// whose members have fixed rights and no roles, invites or moderators; its channel's
    /// id has its guild id's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<BTreeSet<UserId>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Text,
    Voice,
    Announcement,
    /// The one channel of a two-person direct message (never created by a command).
    Dm,
    /// The one channel of a group direct message.
    GroupDm,
    /// A thread under a message (`thread.started`; never created by `CreateChannel`).
    Thread,
}

/// What a published track carries, as LiveKit names its sources.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
    ScreenShareAudio,
    Unknown,
}

/// A channel or a category: the places that carry permission overwrites.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Channel(ChannelId),
    Category(CategoryId),
}

/// What a report is about.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportTarget {
    Message { channel: ChannelId, message: MessageId, author: UserId },
    Member { user: UserId },
}

/// What a service token may touch (`hub.service_token_created`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Every guild, and hub-wide provisioning (users).
    Hub,
    /// One guild.
    Guild(GuildId),
}

/// What a moderator did about a report.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    Dismissed,
    Warned,
    MessageDeleted,
    TimedOut,
    Kicked,
    Banned,
}

impl EventBody {
    /// The kind's tag, e.g. `member.banned`.
    pub fn kind(&self) -> &'static str {
        use EventBody::*;
        match self {
            GuildCreated(_) => "guild.created",
            GuildUpdated { .. } => "guild.updated",
            GuildArchived { .. } => "guild.archived",
            GuildDeleted { .. } => "guild.deleted",
            CategoryCreated { .. } => "category.created",
            CategoryUpdated { .. } => "category.updated",
            CategoryDeleted { .. } => "category.deleted",
            ChannelCreated { .. } => "channel.created",
            ChannelUpdated { .. } => "channel.updated",
            ChannelMoved { .. } => "channel.moved",
            ChannelDeleted { .. } => "channel.deleted",
            SlowModeSet { .. } => "channel.slow_mode",
            ChannelLocked { .. } => "channel.locked",
            UserLimitSet { .. } => "channel.user_limit",
            ChannelArchived { .. } => "channel.archived",
            OverwriteSet { .. } => "overwrite.set",
            RoleCreated { .. } => "role.created",
            RoleUpdated { .. } => "role.updated",
            RolesReordered { .. } => "role.reordered",
            RoleDeleted { .. } => "role.deleted",
            RoleAssigned { .. } => "role.assigned",
            RoleUnassigned { .. } => "role.unassigned",
            InviteCreated { .. } => "invite.created",
            InviteRevoked { .. } => "invite.revoked",
            MemberJoined { .. } => "member.joined",
            MemberLeft { .. } => "member.left",
            MemberKicked { .. } => "member.kicked",
            MemberBanned { .. } => "member.banned",
            MemberUnbanned { .. } => "member.unbanned",
            MemberTimedOut { .. } => "member.timed_out",
            TimeoutRemoved { .. } => "member.timeout_removed",
            NicknameSet { .. } => "member.nickname",
            ReportFiled { .. } => "report.filed",
            ReportResolved { .. } => "report.resolved",
            ReportAssigned { .. } => "report.assigned",
            MessagePosted { .. } => "message.posted",
            ThreadStarted { .. } => "thread.started",
            MessageEdited { .. } => "message.edited",
            MessageRedacted { .. } => "message.redacted",
            ReactionAdded { .. } => "reaction.added",
            ReactionRemoved { .. } => "reaction.removed",
            MessagePinned { .. } => "message.pinned",
            MessageUnpinned { .. } => "message.unpinned",
            VoiceJoined { .. } => "voice.joined",
            VoiceLeft { .. } => "voice.left",
            VoiceTrack { .. } => "voice.track",
            VoiceSelf { .. } => "voice.self",
            VoiceServerMuted { .. } => "voice.server_muted",
            VoiceDisconnected { .. } => "voice.disconnected",
            VoiceMoved { .. } => "voice.moved",
            AccountRegistered { .. } => "account.registered",
            PasswordSet { .. } => "account.password_set",
            SessionOpened { .. } => "session.opened",
            SessionRevoked { .. } => "session.revoked",
            Blocked { .. } => "account.blocked",
            Unblocked { .. } => "account.unblocked",
            DmPolicySet { .. } => "account.dm_policy_set",
            Read { .. } => "account.read",
            ThreadFollowed { .. } => "account.thread_followed",
            NotifySet { .. } => "account.notify_set",
            OperatorGranted { .. } => "hub.operator_granted",
            OperatorRevoked { .. } => "hub.operator_revoked",
            CreatorGranted { .. } => "hub.creator_granted",
            OperatorActed { .. } => "hub.operator_acted",
            UserBanned { .. } => "hub.user_banned",
            ServiceTokenCreated { .. } => "hub.service_token_created",
            ServiceTokenRevoked { .. } => "hub.service_token_revoked",
            ExternalUserLinked { .. } => "hub.external_user_linked",
            ExternalGuildLinked { .. } => "hub.external_guild_linked",
            ExternalChannelLinked { .. } => "hub.external_channel_linked",
            PeerAllowed { .. } => "hub.peer_allowed",
            PeerDenied { .. } => "hub.peer_denied",
        }
    }

    /// The redacted form: the kind and what authorisation needs, without free text that a
    /// person wrote (message text, reasons, nicknames, mentions). The event id and the
    /// signatures cover this form, so erasing the full body keeps the event verifiable.
    pub fn redacted(&self) -> EventBody {
        use EventBody::*;
        let mut body = self.clone();
        match &mut body {
            GuildUpdated { description, .. } => *description = None,
            GuildArchived { reason }
            | GuildDeleted { reason }
            | ChannelLocked { reason, .. }
            | RoleAssigned { reason, .. }
            | RoleUnassigned { reason, .. }
            | MemberKicked { reason, .. }
            | MemberBanned { reason, .. }
            | MemberUnbanned { reason, .. }
            | MemberTimedOut { reason, .. }
            | TimeoutRemoved { reason, .. }
            | ReportFiled { reason, .. }
            | ReportResolved { reason, .. }
            | MessageRedacted { reason, .. }
            | OperatorActed { reason, .. }
            | ChannelArchived { reason, .. }
            | VoiceServerMuted { reason, .. }
            | VoiceDisconnected { reason, .. }
            | VoiceMoved { reason, .. }
            | UserBanned { reason, .. } => reason.clear(),
            ChannelCreated { topic, .. } | ChannelUpdated { topic, .. } => topic.clear(),
            NicknameSet { nickname, .. } => *nickname = None,
            MessagePosted { text, mentions, mention_roles, attachments, extra, .. } => {
                *extra = None;
                text.clear();
                mentions.clear();
                mention_roles.clear();
                for a in attachments {
                    a.filename.clear();
                }
            }
            MessageEdited { text, .. } => text.clear(),
            PasswordSet { phc } => phc.clear(),
            AccountRegistered { display_name, .. } => display_name.clear(),
            _ => {}
        }
        body
    }
}

/// Bodies whose tag has been superseded, kept so that their events decode forever, and the
/// upcast that turns each into the current form in memory.
pub mod legacy {
    use serde::{Deserialize, Serialize};

    use super::EventBody;
    use crate::ids::MessageId;

    /// Superseded tags.
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    pub enum LegacyBody {
        /// The pre-1.0 message form (no mentions). It is the worked example of upcasting:
        /// a new version of any kind follows the same path.
        #[serde(rename = "message.text")]
        MessageText { text: String, reply_to: Option<MessageId> },
    }

    impl LegacyBody {
        pub fn upcast(self) -> EventBody {
            match self {
                LegacyBody::MessageText { text, reply_to } => EventBody::MessagePosted {
                    mention_roles: Default::default(),
                    text,
                    reply_to,
                    mentions: Default::default(),
                    mentions_everyone: false,
                    attachments: Vec::new(),
                    extra: None,
                },
            }
        }
    }
}

//! The guild as its events made it: `Guild` and its parts, the questions asked of it
//! (positions, timeouts, permissions), and [`evolve`], which applies one event.

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{ChannelKind, EventBody, Place, ReportAction, ReportTarget};
use crate::event::{Event, guild_id_for};
use crate::ids::{
    CategoryId, ChannelId, EventId, GuildId, InviteCode, ReportId, RoleId, ServerName, Timestamp, UserId,
};
use crate::permissions::{self, Overwrite, OverwriteTarget, Overwrites, PermissionInput, Permissions, Scope, Verdict};

/// A guild as its events made it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Guild {
    pub id: Option<GuildId>,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<UserId>,
    pub origin: Option<ServerName>,
    pub created_at: Timestamp,
    pub archived: bool,
    pub deleted: bool,
    /// A direct-message conversation (`guild.created` with `dm`), not a guild.
    pub dm: bool,
    /// The seq of the last event applied (0 before the first).
    pub version: u64,
    /// The id of the last event applied.
    pub head: Option<EventId>,
    pub categories: BTreeMap<CategoryId, Category>,
    pub channels: BTreeMap<ChannelId, Channel>,
    pub roles: BTreeMap<RoleId, Role>,
    /// Every role but `@everyone`, lowest first: a role's position is its index + 1.
    pub role_order: Vec<RoleId>,
    pub members: BTreeMap<UserId, Member>,
    pub bans: BTreeMap<UserId, Ban>,
    /// Timeouts by user. Kept apart from `members` so a timeout outlives leave + rejoin.
    pub timeouts: BTreeMap<UserId, Timestamp>,
    pub invites: BTreeMap<InviteCode, Invite>,
    pub reports: BTreeMap<ReportId, Report>,
    /// The channel the last events are creating: a `channel.created` and the overwrites
    /// decided with it, appended together by one sender at one time. A replica checks those
    /// overwrites as `CreateChannel` did, on the channel as just created (`crate::replica`).
    pub opening: Option<Opening>,
    /// The proposals' seals this stream carried lately, against replays.
    pub seals: crate::proposal::Recent,
    /// The thread started from each message that has one.
    pub threads: BTreeMap<crate::ids::MessageId, ChannelId>,
}

/// A channel being created: see [`Guild::opening`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Opening {
    pub channel: ChannelId,
    pub by: UserId,
    pub at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Category {
    pub name: String,
    pub position: u32,
    pub overwrites: Overwrites,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub category: Option<CategoryId>,
    pub position: u32,
    pub topic: String,
    pub overwrites: Overwrites,
    pub slow_mode_seconds: u32,
    /// A voice channel's cap on people in it at once (0: none).
    pub user_limit: u32,
    pub locked: bool,
    /// Read-only for everyone, for good.
    pub archived: bool,
    /// A thread's channel and the message it started from.
    pub thread: Option<ThreadOf>,
}

/// Where a thread hangs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ThreadOf {
    pub parent: ChannelId,
    pub message: crate::ids::MessageId,
    pub started_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Role {
    pub name: String,
    pub permissions: Permissions,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member {
    pub roles: BTreeSet<RoleId>,
    pub nickname: Option<String>,
    pub joined_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ban {
    pub by: UserId,
    pub reason: String,
    pub at: Timestamp,
    /// The banned user's messages posted at or after this time are to be purged (by `by`).
    pub purge_since: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Invite {
    pub creator: UserId,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Report {
    pub reporter: UserId,
    pub target: ReportTarget,
    pub reason: String,
    pub filed_at: Timestamp,
    pub resolution: Option<(ReportAction, UserId)>,
    pub assignee: Option<UserId>,
}

/// Applies one event of the guild's stream.
pub fn evolve(mut guild: Guild, event: &Event) -> Guild {
    use EventBody as E;
    let sender = &event.core.sender;
    let ts = event.core.ts;
    let opening = match event.content() {
        E::ChannelCreated { channel, .. } => Some(Opening { channel: *channel, by: sender.clone(), at: ts }),
        E::OverwriteSet { place: Place::Channel(c), .. } => {
            guild.opening.take().filter(|o| o.channel == *c && o.by == *sender && o.at == ts)
        }
        _ => None,
    };
    match event.content().clone() {
        E::GuildCreated(c) => {
            guild.id = guild_id_for(&c).ok();
            guild.name = c.name;
            guild.owner = Some(c.creator.clone());
            guild.origin = Some(c.origin);
            guild.created_at = c.created_at;
            guild.roles.insert(
                RoleId::EVERYONE,
                Role { name: "@everyone".into(), permissions: Permissions::DEFAULT_EVERYONE },
            );
            guild.members.insert(c.creator, Member { roles: BTreeSet::new(), nickname: None, joined_at: ts });
            if let (Some(members), Some(id)) = (c.dm, guild.id) {
                guild.dm = true;
                let kind = if members.len() > 2 { ChannelKind::GroupDm } else { ChannelKind::Dm };
                if let Some(everyone) = guild.roles.get_mut(&RoleId::EVERYONE) {
                    everyone.permissions = Permissions::DM_MEMBER;
                }
                for user in members {
                    guild.members.entry(user).or_insert(Member {
                        roles: BTreeSet::new(),
                        nickname: None,
                        joined_at: ts,
                    });
                }
                let channel = Channel {
                    name: String::new(),
                    kind,
                    category: None,
                    position: 0,
                    topic: String::new(),
                    overwrites: Overwrites::new(),
                    slow_mode_seconds: 0,
                    user_limit: 0,
                    locked: false,
                    archived: false,
                    thread: None,
                };
                guild.channels.insert(ChannelId::from_bytes(*id.as_bytes()), channel);
            }
        }
        E::GuildUpdated { name, description } => {
            if let Some(name) = name {
                guild.name = name;
            }
            if description.is_some() {
                guild.description = description;
            }
        }
        E::GuildArchived { .. } => guild.archived = true,
        E::GuildDeleted { .. } => guild.deleted = true,
        E::CategoryCreated { category, name, position } => {
            guild.categories.insert(category, Category { name, position, overwrites: Overwrites::new() });
        }
        E::CategoryUpdated { category, name, position } => {
            if let Some(c) = guild.categories.get_mut(&category) {
                c.name = name;
                c.position = position;
            }
        }
        E::CategoryDeleted { category } => {
            guild.categories.remove(&category);
            // Its channels stay, uncategorised, as on Discord.
            for channel in guild.channels.values_mut().filter(|c| c.category == Some(category)) {
                channel.category = None;
            }
        }
        E::ChannelCreated { channel, name, kind, category, position, topic } => {
            guild.channels.insert(
                channel,
                Channel {
                    name,
                    kind,
                    category,
                    position,
                    topic,
                    overwrites: Overwrites::new(),
                    slow_mode_seconds: 0,
                    user_limit: 0,
                    locked: false,
                    archived: false,
                    thread: None,
                },
            );
        }
        E::ThreadStarted { thread, parent, message, name } => {
            guild.threads.insert(message, thread);
            guild.channels.insert(
                thread,
                Channel {
                    name,
                    kind: ChannelKind::Thread,
                    category: None,
                    position: 0,
                    topic: String::new(),
                    overwrites: Overwrites::new(),
                    slow_mode_seconds: 0,
                    user_limit: 0,
                    locked: false,
                    archived: false,
                    thread: Some(ThreadOf { parent, message, started_at: ts }),
                },
            );
        }
        E::ChannelUpdated { channel, name, topic } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.name = name;
                c.topic = topic;
            }
        }
        E::ChannelMoved { channel, category, position } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.category = category;
                c.position = position;
            }
        }
        E::ChannelDeleted { channel } => {
            guild.channels.remove(&channel);
        }
        E::UserLimitSet { channel, limit } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.user_limit = limit;
            }
        }
        E::SlowModeSet { channel, seconds } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.slow_mode_seconds = seconds;
            }
        }
        E::ChannelLocked { channel, locked, .. } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.locked = locked;
            }
        }
        E::ChannelArchived { channel, .. } => {
            if let Some(c) = guild.channels.get_mut(&channel) {
                c.archived = true;
            }
        }
        E::OverwriteSet { place, target, allow, deny } => {
            let overwrites = match place {
                Place::Channel(c) => guild.channels.get_mut(&c).map(|c| &mut c.overwrites),
                Place::Category(c) => guild.categories.get_mut(&c).map(|c| &mut c.overwrites),
            };
            if let Some(ows) = overwrites {
                if allow.is_empty() && deny.is_empty() {
                    ows.remove(&target);
                } else {
                    ows.insert(target, Overwrite { allow, deny });
                }
            }
        }
        E::RoleCreated { role, name, permissions, position } => {
            guild.roles.insert(role, Role { name, permissions });
            let at = (position.max(1) as usize - 1).min(guild.role_order.len());
            guild.role_order.insert(at, role);
        }
        E::RoleUpdated { role, name, permissions } => {
            if let Some(r) = guild.roles.get_mut(&role) {
                r.name = name;
                r.permissions = permissions;
            }
        }
        E::RolesReordered { order } => guild.role_order = order,
        E::RoleDeleted { role } => {
            guild.roles.remove(&role);
            guild.role_order.retain(|r| *r != role);
            for m in guild.members.values_mut() {
                m.roles.remove(&role);
            }
            let target = OverwriteTarget::Role(role);
            for c in guild.channels.values_mut() {
                c.overwrites.remove(&target);
            }
            for c in guild.categories.values_mut() {
                c.overwrites.remove(&target);
            }
        }
        E::RoleAssigned { user, role, .. } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.roles.insert(role);
            }
        }
        E::RoleUnassigned { user, role, .. } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.roles.remove(&role);
            }
        }
        E::InviteCreated { code, max_uses, expires_at } => {
            guild.invites.insert(code, Invite { creator: sender.clone(), max_uses, uses: 0, expires_at });
        }
        E::InviteRevoked { code } => {
            guild.invites.remove(&code);
        }
        E::MemberJoined { user, invite } => {
            if let Some(i) = invite.and_then(|code| guild.invites.get_mut(&code)) {
                i.uses += 1;
            }
            guild.members.insert(user, Member { roles: BTreeSet::new(), nickname: None, joined_at: ts });
        }
        E::MemberLeft { user } | E::MemberKicked { user, .. } => {
            guild.members.remove(&user);
        }
        E::MemberBanned { user, reason, purge_since } => {
            guild.members.remove(&user);
            guild.bans.insert(user, Ban { by: sender.clone(), reason, at: ts, purge_since });
        }
        E::MemberUnbanned { user, .. } => {
            guild.bans.remove(&user);
        }
        E::MemberTimedOut { user, until, .. } => {
            guild.timeouts.insert(user, until);
        }
        E::TimeoutRemoved { user, .. } => {
            guild.timeouts.remove(&user);
        }
        E::NicknameSet { user, nickname } => {
            if let Some(m) = guild.members.get_mut(&user) {
                m.nickname = nickname;
            }
        }
        E::ReportFiled { report, target, reason } => {
            guild.reports.insert(
                report,
                Report { reporter: sender.clone(), target, reason, filed_at: ts, resolution: None, assignee: None },
            );
        }
        E::ReportResolved { report, action, .. } => {
            if let Some(r) = guild.reports.get_mut(&report) {
                r.resolution = Some((action, sender.clone()));
            }
        }
        E::ReportAssigned { report, assignee } => {
            if let Some(r) = guild.reports.get_mut(&report) {
                r.assignee = assignee;
            }
        }
        E::MessagePosted { .. }
        | E::MessageEdited { .. }
        | E::MessageRedacted { .. }
        | E::ReactionAdded { .. }
        | E::ReactionRemoved { .. }
        | E::MessagePinned { .. }
        | E::MessageUnpinned { .. }
        | E::VoiceJoined { .. }
        | E::VoiceLeft { .. }
        | E::VoiceTrack { .. }
        | E::VoiceSelf { .. }
        | E::VoiceServerMuted { .. }
        | E::VoiceDisconnected { .. }
        | E::VoiceMoved { .. }
        | E::AccountRegistered { .. }
        | E::PasswordSet { .. }
        | E::SessionOpened { .. }
        | E::SessionRevoked { .. }
        | E::Blocked { .. }
        | E::Unblocked { .. }
        | E::DmPolicySet { .. }
        | E::Read { .. }
        | E::ThreadFollowed { .. }
        | E::NotifySet { .. }
        | E::OperatorGranted { .. }
        | E::OperatorRevoked { .. }
        | E::CreatorGranted { .. }
        | E::OperatorActed { .. }
        | E::UserBanned { .. }
        | E::ServiceTokenCreated { .. }
        | E::ServiceTokenRevoked { .. }
        | E::ExternalUserLinked { .. }
        | E::ExternalGuildLinked { .. }
        | E::ExternalChannelLinked { .. }
        | E::PeerAllowed { .. }
        | E::PeerDenied { .. } => {}
    }
    guild.opening = opening;
    guild.seals.note(&event.core);
    guild.version = event.core.seq;
    guild.head = Some(event.id);
    guild
}

impl Guild {
    /// Folds a stream's events into a guild.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Guild {
        events.into_iter().fold(Guild::default(), evolve)
    }

    /// The thread started from `message`, if any.
    pub fn thread_of(&self, message: &crate::ids::MessageId) -> Option<ChannelId> {
        self.threads.get(message).copied()
    }

    /// A DM's one channel (the same bytes as its id); `None` for a guild.
    pub fn dm_channel(&self) -> Option<ChannelId> {
        self.id.filter(|_| self.dm).map(|id| ChannelId::from_bytes(*id.as_bytes()))
    }

    pub fn is_owner(&self, user: &UserId) -> bool {
        self.owner.as_ref() == Some(user)
    }

    /// When the user's timeout ends, if they are timed out at `now`.
    pub fn timed_out_until(&self, user: &UserId, now: Timestamp) -> Option<Timestamp> {
        self.timeouts.get(user).copied().filter(|until| *until > now)
    }

    /// A role's position: 0 for `@everyone`, 1 for the lowest other role, and so on.
    pub fn position(&self, role: &RoleId) -> u32 {
        self.role_order.iter().position(|r| r == role).map_or(0, |i| i as u32 + 1)
    }

    /// The position of the member's highest role (0 with only `@everyone`).
    pub fn top_position(&self, user: &UserId) -> u32 {
        self.members.get(user).and_then(|m| m.roles.iter().map(|r| self.position(r)).max()).unwrap_or(0)
    }

    /// What one member needs for the permission functions; `None` if not a member.
    pub fn permission_input<'a>(
        &'a self,
        user: &'a UserId,
        place: Option<Place>,
        now: Timestamp,
    ) -> Option<PermissionInput<'a>> {
        let member = self.members.get(user)?;
        let mut roles: Vec<(RoleId, Permissions)> =
            member.roles.iter().filter_map(|r| self.roles.get(r).map(|role| (*r, role.permissions))).collect();
        roles.sort_by_key(|(r, _)| std::cmp::Reverse(self.position(r)));
        let mut layers: Vec<(Scope, &Overwrites)> = Vec::new();
        match place {
            Some(Place::Channel(c)) => {
                // A thread has its parent's permissions.
                let c = self.channels.get(&c)?.thread.map_or(c, |t| t.parent);
                let channel = self.channels.get(&c)?;
                if let Some(cat) = channel.category.and_then(|cat| self.categories.get(&cat)) {
                    layers.push((Scope::Category, &cat.overwrites));
                }
                layers.push((Scope::Channel, &channel.overwrites));
            }
            Some(Place::Category(c)) => layers.push((Scope::Category, &self.categories.get(&c)?.overwrites)),
            None => {}
        }
        Some(PermissionInput {
            user,
            // A DM's creator is one of its people, with no more rights than the others.
            is_owner: self.is_owner(user) && !self.dm,
            everyone: self.roles.get(&RoleId::EVERYONE).map_or(Permissions::empty(), |r| r.permissions),
            roles,
            layers,
            timed_out_until: self.timed_out_until(user, now),
            in_channel: matches!(place, Some(Place::Channel(_))),
        })
    }

    /// A member's guild-wide permissions (empty for non-members).
    pub fn guild_permissions(&self, user: &UserId, now: Timestamp) -> Permissions {
        self.permission_input(user, None, now).map_or(Permissions::empty(), |i| permissions::compute(&i))
    }

    /// A member's permissions in a channel (empty for non-members and unknown channels).
    pub fn channel_permissions(&self, user: &UserId, channel: ChannelId, now: Timestamp) -> Permissions {
        self.permission_input(user, Some(Place::Channel(channel)), now)
            .map_or(Permissions::empty(), |i| permissions::compute(&i))
    }

    /// Why the member has or lacks each permission in the channel (or guild-wide).
    pub fn explain(&self, user: &UserId, channel: Option<ChannelId>, now: Timestamp) -> Option<Vec<Verdict>> {
        self.permission_input(user, channel.map(Place::Channel), now).map(|i| permissions::explain(&i))
    }
}
